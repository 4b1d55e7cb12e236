package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/dashboard"
	"github.com/redstream/redstream/redstreamtest"
)

// aclUser creates a Redis user allowed the given commands on every key,
// and returns a client logged in as it.
func aclUser(t *testing.T, r *redstreamtest.Redis, name string, commands ...string) *redis.Client {
	t.Helper()
	ctx := context.Background()
	admin := r.Client()
	args := []any{"ACL", "SETUSER", name, "reset", "on", ">pw-" + name, "resetchannels", "~*", "-@all"}
	for _, c := range commands {
		args = append(args, "+"+c)
	}
	require.NoError(t, admin.Do(ctx, args...).Err())
	t.Cleanup(func() { _ = admin.Do(context.Background(), "ACL", "DELUSER", name).Err() })
	c := redis.NewClient(&redis.Options{Addr: admin.Options().Addr, Username: name, Password: "pw-" + name})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readOnlyCommands is the README's ACL row for the read-only dashboard,
// without scan.
var readOnlyCommands = strings.Fields("type xinfo|stream xinfo|groups xinfo|consumers xlen xpending xrange xrevrange zcard zrange get")

// The README's ACL row: a user without SCAN sees the named streams, every
// page of them, and a note saying why the others are missing.
func TestTheREADMEsPermissionsAreEnough(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t, redstreamtest.RealRedis())
	stream, _ := deadLettered(t, r)
	name := "dash-noscan-" + strings.ReplaceAll(stream, ":", "-")
	user := aclUser(t, r, name, readOnlyCommands...)
	s := newSite(t, user, dashboard.WithStreams(stream))
	code, body := s.get("")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "could not be scanned")
	assert.Contains(t, body, "no permissions")
	assert.NotContains(t, body, name, "the Redis user is not shown")
	assert.Equal(t, "1", cell(t, body, stream, "dead"))
	q := url.QueryEscape(stream)
	// The sampler falls back to the named streams too: their charts fill.
	require.Eventually(t, func() bool {
		code, body := s.get("stream?s=" + q)
		return code == http.StatusOK && strings.Contains(body, `data-series="lag"`)
	}, 10*time.Second, 20*time.Millisecond, "no chart of a named stream")
	for _, path := range []string{"stream?s=" + q, "pending?s=" + q + "&g=billing", "deadletters?s=" + q, "tail?s=" + q} {
		code, body := s.get(path)
		assert.Equal(t, http.StatusOK, code, "%s: %s", path, body)
	}
}

// A wrong password is no missing permission: the page says Redis refused
// the dashboard, rather than showing an empty list of streams as if the
// keyspace held none but the named ones.
func TestAWrongPasswordIsAnError(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t, redstreamtest.RealRedis())
	stream := r.Stream(t, "orders")
	lagging(t, r.Client(), stream, 3)
	name := "dash-wrongpw-" + strings.ReplaceAll(stream, ":", "-")
	aclUser(t, r, name, "scan")
	wrong := redis.NewClient(&redis.Options{Addr: r.Client().Options().Addr, Username: name, Password: "not-it", MaxRetries: -1})
	t.Cleanup(func() { _ = wrong.Close() })
	s := newSite(t, wrong, dashboard.WithStreams(stream))
	q := url.QueryEscape(stream)
	// The tail page said "is a , not a stream" (400): TYPE had failed.
	for _, path := range []string{"", "stream?s=" + q, "tail?s=" + q, "deadletters?s=" + q, "pending?s=" + q + "&g=billing"} {
		code, body := s.get(path)
		assert.Equal(t, http.StatusBadGateway, code, "%s: %s", path, body)
		assert.Contains(t, body, "WRONGPASS", path)
		assert.NotContains(t, body, "not-it", path)
	}
}
