package main

import (
	"errors"
	"flag"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// defaultAddr is used when no flag or environment variable names a server.
const defaultAddr = "localhost:6379"

// connFlags are the global flags that say where Redis is.
type connFlags struct {
	addr     string
	url      string
	cluster  string
	password string
	timeout  time.Duration
}

// register defines the global flags on fs. Defaults that come from the
// environment are described, never shown: REDIS_URL may hold a password.
func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "", "Redis server `host:port` (default $REDIS_URL if set, else $REDIS_ADDR, else "+defaultAddr+")")
	fs.StringVar(&c.url, "url", "", "Redis server `URL`: redis://[user:password@]host:port[/db], or rediss://... for TLS")
	fs.StringVar(&c.cluster, "cluster", "", "Redis Cluster seed nodes, comma-separated `host:port,...`; a seed may be a redis:// URL carrying credentials")
	fs.StringVar(&c.password, "password", "", "Redis `password`, replacing one in the URL (default $REDIS_PASSWORD; prefer it: a flag shows in the process list)")
	durationFlag(fs, &c.timeout, "timeout", defaultTimeout, "limit each Redis command, and the first connection, to `duration`")
}

// target is a resolved server or cluster.
type target struct {
	single  *redis.Options
	cluster *redis.ClusterOptions
	// display names the server in messages: addresses only, no credentials.
	display string
}

func (t *target) newClient() redis.UniversalClient {
	if t.cluster != nil {
		return redis.NewClusterClient(t.cluster)
	}
	return redis.NewClient(t.single)
}

// passwords returns the passwords the target carries, to be scrubbed from
// error messages.
func (t *target) passwords() []string {
	if t.cluster != nil {
		return []string{t.cluster.Password}
	}
	return []string{t.single.Password}
}

// resolveTarget picks the server from the flags, then REDIS_URL, then
// REDIS_ADDR, then localhost:6379. -addr, -url and -cluster are exclusive.
// The password is -password, else REDIS_PASSWORD, else the URL's.
func resolveTarget(c connFlags, getenv func(string) string) (*target, error) {
	given := 0
	for _, v := range []string{c.addr, c.url, c.cluster} {
		if v != "" {
			given++
		}
	}
	if given > 1 {
		return nil, usagef("-addr, -url and -cluster are exclusive: give one")
	}
	var (
		t   *target
		err error
	)
	switch {
	case c.cluster != "":
		t, err = clusterTarget(c.cluster)
	case c.url != "":
		t, err = urlTarget(c.url, "-url")
	case c.addr != "":
		t, err = addrTarget(c.addr, "-addr")
	case getenv("REDIS_URL") != "":
		t, err = urlTarget(getenv("REDIS_URL"), "REDIS_URL")
	case getenv("REDIS_ADDR") != "":
		t, err = addrTarget(getenv("REDIS_ADDR"), "REDIS_ADDR")
	default:
		t, err = addrTarget(defaultAddr, "default address")
	}
	if err != nil {
		return nil, err
	}
	password := c.password
	if password == "" {
		password = getenv("REDIS_PASSWORD")
	}
	if t.cluster != nil {
		t.cluster.DialTimeout, t.cluster.ReadTimeout, t.cluster.WriteTimeout = c.timeout, c.timeout, c.timeout
		if password != "" {
			t.cluster.Password = password
		}
	} else {
		t.single.DialTimeout, t.single.ReadTimeout, t.single.WriteTimeout = c.timeout, c.timeout, c.timeout
		if password != "" {
			t.single.Password = password
		}
	}
	return t, nil
}

// addrTarget accepts host:port, or a URL for convenience.
func addrTarget(addr, source string) (*target, error) {
	if strings.Contains(addr, "://") {
		return urlTarget(addr, source)
	}
	if err := checkHostPort(addr, source); err != nil {
		return nil, err
	}
	return &target{single: &redis.Options{Addr: addr}, display: addr}, nil
}

func checkHostPort(addr, source string) error {
	if strings.Contains(addr, "@") {
		// Likely user:password@host: do not echo it.
		return usagef("%s takes host:port; pass credentials in a redis:// URL with -url", source)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return usagef("%s %q: want host:port", source, addr)
	}
	return nil
}

// urlTarget parses a redis://, rediss:// or unix:// URL.
func urlTarget(raw, source string) (*target, error) {
	opt, err := parseURL(raw, source)
	if err != nil {
		return nil, err
	}
	return &target{single: opt, display: opt.Addr}, nil
}

func parseURL(raw, source string) (*redis.Options, error) {
	opt, err := redis.ParseURL(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// url.Error quotes the whole URL, password included.
			return nil, usagef("%s is not a valid URL: want redis://[user:password@]host:port[/db] or rediss://...", source)
		}
		return nil, usagef("%s: %s", source, strings.TrimPrefix(err.Error(), "redis: "))
	}
	return opt, nil
}

// clusterTarget parses the -cluster seed list. Credentials and TLS come
// from the first seed given as a URL.
func clusterTarget(seeds string) (*target, error) {
	opt := &redis.ClusterOptions{}
	var shown []string
	credentials := false
	for seed := range strings.SplitSeq(seeds, ",") {
		seed = strings.TrimSpace(seed)
		if seed == "" {
			continue
		}
		if !strings.Contains(seed, "://") {
			if err := checkHostPort(seed, "-cluster seed"); err != nil {
				return nil, err
			}
			opt.Addrs = append(opt.Addrs, seed)
			shown = append(shown, seed)
			continue
		}
		u, err := parseURL(seed, "-cluster seed")
		if err != nil {
			return nil, err
		}
		opt.Addrs = append(opt.Addrs, u.Addr)
		shown = append(shown, u.Addr)
		if !credentials {
			opt.Username, opt.Password, opt.TLSConfig = u.Username, u.Password, u.TLSConfig
			credentials = true
		}
	}
	if len(opt.Addrs) == 0 {
		return nil, usagef("-cluster needs at least one host:port")
	}
	return &target{cluster: opt, display: strings.Join(shown, ",")}, nil
}

// urlSecrets returns, as best it can, the userinfo parts of a URL-like
// string, even one that does not parse, so that no error shows them.
func urlSecrets(raw string) []string {
	var out []string
	for part := range strings.SplitSeq(raw, ",") {
		_, rest, ok := strings.Cut(part, "://")
		if !ok {
			continue
		}
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			continue
		}
		userinfo := rest[:at]
		if _, pass, ok := strings.Cut(userinfo, ":"); ok && pass != "" {
			out = append(out, pass)
			if unescaped, err := url.PathUnescape(pass); err == nil {
				out = append(out, unescaped)
			}
		}
	}
	return out
}
