package dashboard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/keys"
	"github.com/redstream/redstream/internal/serverinfo"
	"github.com/redstream/redstream/internal/slot"
)

// figures are one overview row: a stream, or a partitioned stream summed
// over its partitions.
type figures struct {
	Name       string
	Partitions int // 0 for a plain stream
	// Info has the stream's groups without their consumers; nil when the
	// stream is missing or could not be read (Err).
	Info    *redstream.StreamInfo
	Owners  map[string]string // by group: the partition lease's holder
	Added   int64             // entries ever added (XINFO entries-added), for throughput
	Missing bool
	Err     error
}

// partitionName matches "<base>:p<n>", a partition of a partitioned stream.
var partitionName = regexp.MustCompile(`^(.+):p(0|[1-9][0-9]{0,4})$`)

// streamSet is what the dashboard shows: plain streams and partitioned
// bases with their partition counts.
type streamSet struct {
	plain       []string
	partitioned map[string]int
}

// discover finds the streams: SCAN with TYPE stream (on every master of a
// cluster) unless WithoutScan, plus the named ones. Dead-letter streams are
// shown with their streams, not as streams. Partitions are grouped by base.
func (d *Dashboard) discover(ctx context.Context) (streamSet, error) {
	return d.discoverScan(ctx, !d.cfg.noScan)
}

// discoverScan is discover, with or without the scan.
func (d *Dashboard) discoverScan(ctx context.Context, scan bool) (streamSet, error) {
	names := slices.Clone(d.cfg.streams)
	if scan {
		found, err := d.scan(ctx)
		if err != nil {
			return streamSet{}, err
		}
		names = append(names, found...)
	}
	set := streamSet{partitioned: map[string]int{}}
	seen := map[string]bool{}
	parts := map[string][]string{} // by base
	counts := map[string]int{}     // by base: the highest partition + 1
	for _, n := range names {
		// A key redstream cannot use as a stream (its pages would refuse
		// it) is not shown; neither is a dead-letter stream, shown with
		// its stream.
		if seen[n] || isDeadLetterKey(n) || redstream.ValidateStream(n) != nil {
			continue
		}
		seen[n] = true
		if m := partitionName.FindStringSubmatch(n); m != nil {
			i, _ := strconv.Atoi(m[2])
			parts[m[1]] = append(parts[m[1]], n)
			counts[m[1]] = max(counts[m[1]], i+1)
			continue
		}
		set.plain = append(set.plain, n)
	}
	// Partitions are summed under their base when they start at p0 and
	// the base is no stream of its own: "shop:p3" alone, or "x:p0" beside
	// a stream "x", are streams of their own.
	for base, names := range parts {
		if !seen[base+":p0"] || seen[base] {
			set.plain = append(set.plain, names...)
			continue
		}
		set.partitioned[base] = counts[base]
	}
	slices.Sort(set.plain)
	return set, nil
}

// isDeadLetterKey reports whether key is the dead-letter stream of some
// stream ([redstream.DeadLetterKey]): the prefix, then a name with a hash
// tag. "dead-letter:mine" is no stream's: DeadLetterKey("mine") is
// "dead-letter:{mine}".
func isDeadLetterKey(key string) bool {
	rest, ok := strings.CutPrefix(key, redstream.DeadLetterPrefix)
	if !ok {
		return false
	}
	_, tagged := slot.Tag(rest)
	return tagged
}

// errNoScan says the scan failed: the page names what it shows instead.
var errNoScan = errors.New("SCAN failed")

func (d *Dashboard) scan(ctx context.Context) ([]string, error) {
	var (
		mu    sync.Mutex
		names []string
	)
	scanOne := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.ScanType(ctx, 0, "*", 1000, "stream").Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			names = append(names, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := d.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scanOne(ctx, c) })
	} else {
		err = scanOne(ctx, d.rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoScan, err)
	}
	return names, nil
}

// probe holds the commands of one stream in the first pipeline.
type probe struct {
	xinfo  *redis.XInfoStreamCmd
	groups *redis.XInfoGroupsCmd
	dl     *redis.IntCmd
	sched  *redis.IntCmd
	next   *redis.ZSliceCmd
}

// groupProbe holds the commands of one group in the second pipeline.
type groupProbe struct {
	oldest *redis.XPendingExtCmd // nil when nothing is pending
	pause  *redis.StringCmd
	lease  *redis.StringCmd
}

// gather reads the figures of every stream of set: the plain streams in two
// pipelined round trips whatever their number, partitioned ones with
// [redstream.InspectPartitions].
func (d *Dashboard) gather(ctx context.Context, set streamSet) ([]figures, error) {
	out, err := d.gatherPlain(ctx, set.plain)
	if err != nil {
		return nil, err
	}
	bases := make([]string, 0, len(set.partitioned))
	for b := range set.partitioned {
		bases = append(bases, b)
	}
	slices.Sort(bases)
	for _, b := range bases {
		f := figures{Name: b, Partitions: set.partitioned[b]}
		p, err := redstream.InspectPartitions(ctx, d.rdb, b, f.Partitions)
		switch {
		case errors.Is(err, redstream.ErrNoStream):
			f.Missing = true
		case err != nil:
			f.Err = err
		default:
			f.Info, f.Added = &p.Total, p.Total.Length
		}
		out = append(out, f)
	}
	return out, nil
}

func (d *Dashboard) gatherPlain(ctx context.Context, streams []string) ([]figures, error) {
	probes := make([]probe, len(streams))
	_, err := d.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, s := range streams {
			probes[i] = probe{
				xinfo:  pipe.XInfoStream(ctx, s),
				groups: pipe.XInfoGroups(ctx, s),
				dl:     pipe.XLen(ctx, redstream.DeadLetterKey(s)),
				sched:  pipe.ZCard(ctx, keys.Scheduled(s)),
				next:   pipe.ZRangeWithScores(ctx, keys.Scheduled(s), 0, 0),
			}
		}
		return nil
	})
	if err != nil && isConnErr(err) {
		return nil, err
	}
	out := make([]figures, len(streams))
	gps := make([][]groupProbe, len(streams))
	_, err = d.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, s := range streams {
			out[i] = d.streamFigures(s, &probes[i])
			if out[i].Info == nil {
				continue
			}
			for _, g := range out[i].Info.Groups {
				gp := groupProbe{
					pause: pipe.Get(ctx, keys.Paused(s, g.Name)),
					lease: pipe.Get(ctx, keys.Lease(s, g.Name)),
				}
				if g.Pending > 0 {
					gp.oldest = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s, Group: g.Name, Start: "-", End: "+", Count: 1})
				}
				gps[i] = append(gps[i], gp)
			}
		}
		return nil
	})
	if err != nil && isConnErr(err) {
		return nil, err
	}
	now := time.Now()
	for i := range out {
		if out[i].Info == nil {
			continue
		}
		if err := groupFigures(&out[i], gps[i], now); err != nil {
			out[i].Info, out[i].Err = nil, err
			continue
		}
		if !lagKnown(out[i].Info) {
			// Redis did not report a lag (entries deleted in between, or
			// Redis before 7): the library counts it.
			info, err := redstream.Inspect(ctx, d.rdb, streams[i])
			if err != nil {
				out[i].Info, out[i].Err = nil, err
				continue
			}
			out[i].Info = info
		}
	}
	return out, nil
}

// streamFigures reads the first pipeline's replies of stream s.
func (d *Dashboard) streamFigures(s string, p *probe) figures {
	f := figures{Name: s}
	x, err := p.xinfo.Result()
	if redis.HasErrorPrefix(err, "no such key") || (err == nil && x == nil) {
		f.Missing = true
		return f
	}
	if err != nil {
		f.Err = fmt.Errorf("stream %s: %w", s, err)
		return f
	}
	info := &redstream.StreamInfo{
		Stream: s, Length: x.Length, FirstID: x.FirstEntry.ID, LastID: x.LastEntry.ID,
		LastGeneratedID: x.LastGeneratedID,
	}
	f.Added = x.EntriesAdded
	if f.Added == 0 {
		f.Added = x.Length // a Redis (or miniredis) without entries-added
	}
	if info.DeadLetterLength, err = p.dl.Result(); err != nil {
		f.Err = fmt.Errorf("dead letters of %s: %w", s, err)
		return f
	}
	info.Scheduled, err = p.sched.Result()
	if err != nil {
		info.Scheduled = -1 // unknown: a user limited to the stream's keys
	} else if next, err := p.next.Result(); err == nil && len(next) == 1 {
		info.NextDue = time.UnixMilli(int64(next[0].Score))
	}
	groups, err := p.groups.Result()
	if err != nil {
		f.Err = fmt.Errorf("groups of %s: %w", s, err)
		return f
	}
	for _, g := range groups {
		info.Groups = append(info.Groups, redstream.GroupInfo{
			Name: g.Name, LastDeliveredID: g.LastDeliveredID, Pending: g.Pending,
			Lag: g.Lag, LagKnown: serverinfo.LagReported(g.Lag, x.EntriesAdded, x.Length),
		})
	}
	f.Info = info
	return f
}

// groupFigures reads the second pipeline's replies into f's groups.
func groupFigures(f *figures, gps []groupProbe, now time.Time) error {
	for j := range f.Info.Groups {
		g, gp := &f.Info.Groups[j], gps[j]
		if gp.oldest != nil {
			oldest, err := gp.oldest.Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("pending of %s in %s: %w", g.Name, f.Name, err)
			}
			if len(oldest) == 1 {
				g.OldestPendingID, g.OldestPendingIdle = oldest[0].ID, oldest[0].Idle
				if t, ok := idTime(oldest[0].ID); ok {
					g.OldestPendingAge = max(0, now.Sub(t))
				}
			}
		}
		switch v, err := gp.pause.Result(); {
		case err == nil:
			g.Paused, g.PausedKnown = true, true
			g.PausedSince, _ = time.Parse(time.RFC3339, v)
		case errors.Is(err, redis.Nil):
			g.PausedKnown = true
		}
		if owner, err := gp.lease.Result(); err == nil {
			if f.Owners == nil {
				f.Owners = map[string]string{}
			}
			f.Owners[g.Name] = owner
		}
	}
	return nil
}

func lagKnown(info *redstream.StreamInfo) bool {
	for _, g := range info.Groups {
		if !g.LagKnown {
			return false
		}
	}
	return true
}

// isConnErr tells a failure of the connection (Redis down, a timeout) from
// the error replies of single commands, which the rows show.
func isConnErr(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
