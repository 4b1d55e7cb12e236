package redstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/faultkit"
	"github.com/redstream/redstream/internal/redistest"
)

// aclCommands is the least a redstream user needs: every command the
// library sends, directly or from its Lua scripts (Redis checks those
// against the caller's ACL too). It is what the README's "Access control
// and TLS" section shows.
var aclCommands = []string{
	// Producer.Publish, PublishBatch; WithID checks for a duplicate with XRANGE.
	"+xadd", "+xrange",
	// Consumer: group setup, reads (xread: the wait of a reader of several
	// streams), own-pending drain, acknowledgements, reaper, idle-consumer
	// cleanup.
	"+xgroup|create", "+xreadgroup", "+xread", "+xack", "+xpending", "+xautoclaim", "+xinfo|consumers",
	// Consumer: the consumer-name lease (a script calling get, set, del)
	// and the failed-attempts record (hmget, hdel; scripts calling hget,
	// hset, pexpire, hexists), keys {stream}:redstream-*.
	"+get", "+set", "+hget", "+hset", "+hmget", "+hdel", "+hexists", "+pexpire",
	// Lua scripts (lease renewal, dead letter, replay, idle-consumer delete,
	// safe trim): EVALSHA, falling back to EVAL, and the commands they call.
	"+evalsha", "+eval", "+xclaim", "+xdel", "+xtrim", "+xlen", "+xinfo|groups", "+xgroup|delconsumer",
	// Inspect and DeadLetters.List.
	"+xinfo|stream", "+xrevrange",
	// DeadLetters.Purge; Replay checks that the stream exists.
	"+multi", "+exec", "+del", "+exists",
	// Scheduled delivery (schedule, move when due by the server's TIME,
	// cancel, list, Inspect's count), keys {stream}:redstream-scheduled*.
	"+time", "+zadd", "+zscore", "+zrangebyscore", "+zrange", "+zrem", "+zcard",
}

// aclSetInfo is what go-redis needs on Redis 7.2 and later and on Valkey:
// it sends CLIENT SETINFO on every new connection. Redis 7.0 has no such
// command and refuses the name in ACL SETUSER.
const aclSetInfo = "+client|setinfo"

// knowsSetInfo reports whether the server has CLIENT SETINFO.
func knowsSetInfo(t testing.TB, admin *redis.Client) bool {
	t.Helper()
	info, err := admin.Do(testCtx(t), "COMMAND", "INFO", "client|setinfo").Slice()
	require.NoError(t, err)
	return len(info) == 1 && info[0] != nil
}

// TestREADMEACLLineIsTheTestedOne: the README's ACL SETUSER line grants
// exactly the commands TestACLRestrictedUser runs with, plus aclSetInfo.
func TestREADMEACLLineIsTheTestedOne(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	text := string(readme)
	from := strings.Index(text, "ACL SETUSER billing")
	require.NotEqual(t, -1, from, "the README shows an ACL SETUSER line")
	end := strings.Index(text[from:], "```")
	require.NotEqual(t, -1, end)
	var granted []string
	for _, field := range strings.Fields(text[from : from+end]) {
		if strings.HasPrefix(field, "+") {
			granted = append(granted, field)
		}
	}
	assert.ElementsMatch(t, append(slices.Clone(aclCommands), aclSetInfo), granted)
}

// aclKeyPatterns returns the key patterns for streams named prefix...:
// the streams, their dead-letter streams and redstream's own keys in the
// streams' hash slots.
func aclKeyPatterns(prefix string) []string {
	return []string{"~" + prefix + "*", "~" + DeadLetterPrefix + "{" + prefix + "*}", "~{" + prefix + "*}:redstream-*"}
}

// setACLUser creates (or resets) user with password pass, allowed
// aclCommands on the keys of aclKeyPatterns(prefix) and nothing else.
func setACLUser(t testing.TB, admin *redis.Client, user, pass, prefix string) {
	t.Helper()
	args := []any{"ACL", "SETUSER", user, "reset", "on", ">" + pass, "resetchannels", "-@all"}
	for _, p := range aclKeyPatterns(prefix) {
		args = append(args, p)
	}
	for _, c := range aclCommands {
		args = append(args, c)
	}
	if knowsSetInfo(t, admin) {
		args = append(args, aclSetInfo)
	}
	require.NoError(t, admin.Do(testCtx(t), args...).Err())
}

func randomSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// TestACLRestrictedUser runs everything redstream does through a Redis
// user restricted by ACL to the stream keys and to aclCommands, on a server
// that requires a password: producing, consuming (own-pending drain, lease
// renewal, retries, reaping a dead consumer's entries), dead-lettering,
// replaying, the standalone reaper with idle-consumer cleanup, Inspect and
// Trim. Redis's ACL LOG must then show no denied command. A wrong password
// must fail with errors, and log lines, that do not contain any password.
func TestACLRestrictedUser(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	adminPass, userPass, wrongPass := randomSecret(t), randomSecret(t), randomSecret(t)
	srv := redistest.Start(t, "--requirepass", adminPass)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: adminPass})
	t.Cleanup(func() { _ = admin.Close() })

	const prefix = "test:acl:"
	setACLUser(t, admin, "redstream", userPass, prefix)

	logs := &faultkit.SyncBuffer{}
	faultkit.DumpOnFailure(t, logs)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	assertNoSecret := func(what, s string) {
		t.Helper()
		for name, secret := range map[string]string{"admin password": adminPass, "user password": userPass, "wrong password": wrongPass} {
			assert.NotContains(t, s, secret, "%s contains the %s", what, name)
		}
	}

	user := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "redstream", Password: userPass})
	t.Cleanup(func() { _ = user.Close() })
	stream := prefix + randomSecret(t)[:8]

	// The ACL is enforced: other keys are out of reach.
	err := user.XAdd(ctx, &redis.XAddArgs{Stream: "other:" + stream, Values: []any{"k", "v"}}).Err()
	require.Error(t, err)
	require.True(t, redis.HasErrorPrefix(err, "NOPERM"), "got %v", err)
	require.NoError(t, admin.Do(ctx, "ACL", "LOG", "RESET").Err()) // forget that denial

	p, err := NewProducer[Order](user, stream, WithLogger(logger))
	require.NoError(t, err)
	ids := make(map[string]string)
	for _, key := range []string{"ok-1", "ok-2", "slow", "flaky", "poison", "ghost"} {
		ids[key], err = p.Publish(ctx, Order{ID: key, UserID: "u"})
		require.NoError(t, err, key)
	}
	batch, err := p.PublishBatch(ctx, []Order{{ID: "batch-1"}, {ID: "batch-2"}})
	require.NoError(t, err)
	require.Len(t, batch, 2)
	dupID, err := p.Publish(ctx, Order{ID: "ok-1"}, WithID(ids["ok-1"]))
	require.ErrorIs(t, err, ErrDuplicate)
	require.Equal(t, ids["ok-1"], dupID)

	// Before the consumer starts: one entry pending for its own name (it
	// drains those first) and one for a consumer that is gone (its reaper
	// takes it over once idle).
	const group, name = "billing", "acl-consumer"
	require.NoError(t, user.XGroupCreateMkStream(ctx, stream, group, "0").Err())
	for _, owner := range []string{name, "ghost"} {
		res, err := user.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: owner, Streams: []string{stream, ">"}, Count: 1, Block: -1}).Result()
		require.NoError(t, err)
		require.Len(t, res[0].Messages, 1)
	}

	l := faultkit.NewLedger()
	var flakyFailed, poisonFixed atomic.Bool
	var (
		bgErrors   atomic.Int64
		redisFails atomic.Int64
	)
	c, err := NewConsumer(user, group,
		WithConsumerName(name),
		WithMinIdle(150*time.Millisecond), // leases renewed every 50ms
		WithIdleConsumerTTL(0),            // the standalone reaper below deletes idle consumers
		WithReapInterval(50*time.Millisecond),
		WithBlock(50*time.Millisecond),
		WithLogger(logger),
		WithErrorHandler(func(err error) {
			bgErrors.Add(1)
			// Only the handlers' own failures: no Redis call was refused.
			if op, ok := errors.AsType[*OpError](err); !ok || (op.Op != "handle" && op.Op != "dead-letter") {
				redisFails.Add(1)
				t.Errorf("background error: %v", err)
			}
			assertNoSecret("an error passed to the error handler", err.Error())
		}),
	)
	require.NoError(t, err)
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		switch m.Payload.ID {
		case "slow": // outlives several lease renewals
			select {
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		case "flaky": // the retry re-claims it first
			if !flakyFailed.Swap(true) {
				return RetryAfter(10*time.Millisecond, errors.New("flaky"))
			}
		case "poison":
			if !poisonFixed.Load() {
				return fmt.Errorf("cannot charge: %w", ErrDeadLetter)
			}
		}
		l.Handle(name, m.Payload.ID, m.Time())
		return nil
	}))
	// A second, quiet stream: the consumer reads both with one group
	// reader (XREAD, XINFO GROUPS), under the same ACL.
	quiet := stream + ":quiet"
	var quietHandled atomic.Int64
	require.NoError(t, Handle(c, quiet, func(context.Context, *Message[Order]) error {
		quietHandled.Add(1)
		return nil
	}))
	run := start(t, c)
	dlq, err := NewDeadLetters(user, stream)
	require.NoError(t, err)
	eventually(t, 20*time.Second, func() bool {
		_, _, handled := l.Counts()
		n, err := dlq.Len(ctx)
		return handled == 7 && err == nil && n == 1
	}, "all but the poison handled (including the ghost's), the poison dead-lettered")
	quietP, err := NewProducer[Order](user, quiet)
	require.NoError(t, err)
	_, err = quietP.Publish(ctx, Order{ID: "quiet"})
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() bool { return quietHandled.Load() == 1 }, "the quiet stream's entry is handled")

	letters, _, err := dlq.List(ctx, ListOptions{Count: 10, NewestFirst: true})
	require.NoError(t, err)
	require.Len(t, letters, 1)
	assert.Equal(t, ids["poison"], letters[0].OriginID)
	assert.Equal(t, ReasonHandler, letters[0].Reason)

	poisonFixed.Store(true)
	replayed, err := dlq.Replay(ctx, ReplayAll())
	require.NoError(t, err)
	assert.Equal(t, 1, replayed)
	eventually(t, 10*time.Second, func() bool { _, _, handled := l.Counts(); return handled == 8 }, "the replayed message is handled")
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, user, stream, group) == 0 }, "pending list drains")

	info, err := Inspect(ctx, user, stream)
	require.NoError(t, err)
	require.Len(t, info.Groups, 1)
	assert.Equal(t, int64(9), info.Length) // 8 published, 1 replayed
	assert.Zero(t, info.Groups[0].Pending)
	assert.Zero(t, info.DeadLetterLength)

	res, err := Trim(ctx, user, stream, TrimPolicy{MaxLen: 2})
	require.NoError(t, err)
	assert.Positive(t, res.Removed, "%+v", res)

	require.NoError(t, run.stop(t))

	// The standalone reaper: dead-letters an entry at the delivery limit
	// and deletes consumers idle for the TTL that hold nothing.
	_, err = p.Publish(ctx, Order{ID: "dies-with-consumer"})
	require.NoError(t, err)
	for range 2 { // delivered twice, to consumers that died with it
		err := user.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: stream, Group: group, Consumer: "ghost", Start: "0", Count: 10}).Err()
		require.NoError(t, err)
		_, err = user.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "ghost", Streams: []string{stream, ">"}, Count: 10, Block: -1}).Result()
		if err != nil {
			require.ErrorIs(t, err, redis.Nil)
		}
	}
	// Its handler failed once before that consumer died (recorded with
	// the user's permissions, as a consumer records it).
	ghostPending, err := user.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Consumer: "ghost", Start: "-", End: "+", Count: 10}).Result()
	require.NoError(t, err)
	require.Len(t, ghostPending, 1)
	recordAttempts(t, user, stream, group, ghostPending[0].ID, 1)
	rp, err := NewReaper(user, group, []string{stream},
		WithMaxDeliveries(1), WithMinIdle(30*time.Millisecond), WithIdleConsumerTTL(30*time.Millisecond), WithLogger(logger))
	require.NoError(t, err)
	var stats ReapStats
	eventually(t, 10*time.Second, func() bool {
		s, err := rp.ReapOnce(ctx)
		require.NoError(t, err)
		stats.DeadLettered += s.DeadLettered
		stats.ConsumersDeleted += s.ConsumersDeleted
		return stats.DeadLettered == 1 && stats.ConsumersDeleted >= 1
	}, "standalone reaper dead-letters and deletes idle consumers")

	deleted, err := dlq.Delete(ctx, letterIDs(t, dlq)...)
	require.NoError(t, err)
	assert.Equal(t, int64(1), deleted)
	purged, err := dlq.Purge(ctx)
	require.NoError(t, err)
	assert.Zero(t, purged)

	// Nothing the library did was denied.
	denied, err := admin.Do(ctx, "ACL", "LOG").Slice()
	require.NoError(t, err)
	assert.Empty(t, denied, "ACL LOG: commands or keys the restricted user was denied")

	// A wrong password: every error says so without the password, and so
	// does the log.
	wrong := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "redstream", Password: wrongPass})
	t.Cleanup(func() { _ = wrong.Close() })
	wp, err := NewProducer[Order](wrong, stream, WithLogger(logger))
	require.NoError(t, err)
	_, publishErr := wp.Publish(ctx, Order{ID: "never"})
	require.Error(t, publishErr)
	assert.Contains(t, publishErr.Error(), "WRONGPASS")
	assertNoSecret("the Publish error", publishErr.Error())

	wc, err := NewConsumer(wrong, group, WithLogger(logger), WithErrorHandler(func(err error) {
		assertNoSecret("an error passed to the error handler", err.Error())
	}))
	require.NoError(t, err)
	require.NoError(t, Handle(wc, stream, func(context.Context, *Message[Order]) error { return nil }))
	runErr := make(chan error, 1)
	go func() { runErr <- wc.Run(ctx) }()
	var wrongRunErr error
	select {
	case wrongRunErr = <-runErr:
	case <-time.After(10 * time.Second):
		t.Fatal("Run with a wrong password did not return: a refused login is permanent")
	}
	require.Error(t, wrongRunErr)
	assert.Contains(t, wrongRunErr.Error(), "WRONGPASS")
	assertNoSecret("the Run error", wrongRunErr.Error())

	opt, err := redis.ParseURL("redis://redstream:" + wrongPass + "@" + srv.Addr() + "/0")
	require.NoError(t, err)
	fromURL := redis.NewClient(opt)
	t.Cleanup(func() { _ = fromURL.Close() })
	_, inspectErr := Inspect(ctx, fromURL, stream)
	require.Error(t, inspectErr)
	assertNoSecret("the Inspect error (client from a URL)", inspectErr.Error())

	assertNoSecret("the log", logs.String())
	assert.Zero(t, redisFails.Load(), "failed Redis calls in the consumer's background work")
	t.Logf("restricted user: %d background errors reported (handler outcomes); wrong password: Publish: %v; Run: %v; Inspect: %v", bgErrors.Load(), publishErr, wrongRunErr, inspectErr)
}

func letterIDs(t testing.TB, dlq *DeadLetters) []string {
	t.Helper()
	letters, _, err := dlq.List(testCtx(t), ListOptions{Count: 100})
	require.NoError(t, err)
	ids := make([]string, len(letters))
	for i, d := range letters {
		ids[i] = d.ID
	}
	return ids
}

// TestTLSWithACLUser connects as the restricted user over TLS, with the
// client set up as the README shows (a rediss:// URL parsed by
// redis.ParseURL, plus the CA that signed the server's certificate), and
// publishes and consumes through it.
func TestTLSWithACLUser(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dir := t.TempDir()
	caPEM, certFile, keyFile := writeTestCerts(t, dir)
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, caPEM, 0o600))
	tlsPort := freeTCPPort(t)
	adminPass, userPass := randomSecret(t), randomSecret(t)
	srv := redistest.Start(t, "--requirepass", adminPass,
		"--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", caFile, "--tls-auth-clients", "no")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: adminPass})
	t.Cleanup(func() { _ = admin.Close() })
	const prefix = "test:tls:"
	setACLUser(t, admin, "redstream", userPass, prefix)

	opt, err := redis.ParseURL(fmt.Sprintf("rediss://redstream:%s@127.0.0.1:%d/0", userPass, tlsPort))
	require.NoError(t, err)
	require.NotNil(t, opt.TLSConfig, "rediss:// turns TLS on")
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	opt.TLSConfig.RootCAs = roots
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })

	stream := prefix + randomSecret(t)[:8]
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	handled := make(chan string, 3)
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		handled <- m.Payload.ID
		return nil
	}))
	start(t, c)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	for _, key := range []string{"a", "b", "c"} {
		_, err := p.Publish(ctx, Order{ID: key})
		require.NoError(t, err)
	}
	for range 3 {
		select {
		case <-handled:
		case <-ctx.Done():
			t.Fatal("messages not handled over TLS")
		}
	}
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 }, "pending list drains")

	// Without the CA the server's certificate is refused.
	bad, err := redis.ParseURL(fmt.Sprintf("rediss://redstream:%s@127.0.0.1:%d/0", userPass, tlsPort))
	require.NoError(t, err)
	badRDB := redis.NewClient(bad)
	t.Cleanup(func() { _ = badRDB.Close() })
	_, err = Inspect(ctx, badRDB, stream)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate")
	assert.NotContains(t, err.Error(), userPass)
}

// writeTestCerts writes a server certificate for 127.0.0.1 and its key
// into dir, signed by a new CA whose certificate it returns.
func writeTestCerts(t testing.TB, dir string) (caPEM []byte, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redstream test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)

	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), certFile, keyFile
}

// freeTCPPort returns a loopback port that was free a moment ago.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}
