package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// tailBlock is how long one XREAD waits for new entries: short, so that
// Ctrl-C ends the command promptly.
const tailBlock = time.Second

// defaultNoFollow is how many entries "tail -no-follow" prints by default,
// as tail(1) does.
const defaultNoFollow = 10

var tailCommand = &command{
	name:     "tail",
	synopsis: "STREAM [-from ID|$] [-n N] [-no-follow] [-json]",
	args:     []string{"STREAM"},
	summary:  "print entries as they are added, like tail -f",
	about: `Prints the entries added to STREAM from now on (or after -from ID), one a
line: the ID, the time encoded in it (UTC) and the fields as name=value in
name order (a value is quoted when it is empty or holds spaces). It reads
with XREAD, not as a consumer group: it changes nothing in the groups, and
entries it prints are still delivered to them as usual. It runs until
interrupted (Ctrl-C), or until it has printed -n entries.

With -no-follow it prints what is there and exits: the last -n entries
(10 by default), oldest first, or with -from ID the first -n entries after
ID ("-from 0": the first entries of the stream).

With -json it prints one JSON object a line: {"id", "time", "fields"}.`,
	examples: `redstream tail orders:order:created
redstream tail orders:order:created -from 0 -n 10      # the first 10 entries
redstream tail orders:order:created -from 1700000000000-0 -json
redstream tail orders:order:created -n 5 -no-follow   # the last 5 entries`,
	setup: func(fs *flag.FlagSet) runFunc {
		from := fs.String("from", "$", "print entries after `ID`: $ for new entries only, 0 for the whole stream")
		n := fs.Int("n", 0, "stop after `N` entries (default: run until interrupted; 10 with -no-follow)")
		noFollow := fs.Bool("no-follow", false, "print the last N entries (or the first N after -from) and exit")
		asJSON := fs.Bool("json", false, "print each entry as a JSON object on its own line")
		return func(ctx context.Context, a *app, args []string) error {
			s, err := stream(args[0])
			if err != nil {
				return err
			}
			if *n < 0 {
				return usagef("-n must not be negative, got %d", *n)
			}
			if *from != "$" && *from != "0" {
				if err := parseID("-from", *from); err != nil {
					return err
				}
			}
			if *noFollow {
				fromSet := false
				fs.Visit(func(f *flag.Flag) { fromSet = fromSet || f.Name == "from" })
				if !fromSet {
					*from = ""
				}
				if *n == 0 {
					*n = defaultNoFollow
				}
				return a.tailNoFollow(ctx, s, *from, *n, *asJSON)
			}
			return a.tail(ctx, s, *from, *n, *asJSON)
		}
	},
}

type entryJSON struct {
	ID     string            `json:"id"`
	Time   string            `json:"time"`
	Fields map[string]string `json:"fields"`
}

func (a *app) tail(ctx context.Context, s, from string, n int, asJSON bool) error {
	rdb, err := a.client(ctx)
	if err != nil {
		return err
	}
	xinfo, err := rdb.XInfoStream(ctx, s).Result()
	switch {
	case isNoSuchKey(err):
		return noStream(s)
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return streamMustExist(ctx, rdb, s)
	case err != nil:
		return fmt.Errorf("stream %s: %w", s, err)
	}
	// "$" is resolved once: passing it to every XREAD would miss entries
	// added between two reads.
	last := from
	if from == "$" {
		last = xinfo.LastGeneratedID
	}
	for seen := 0; n == 0 || seen < n; {
		count := int64(100)
		if n > 0 {
			count = min(count, int64(n-seen))
		}
		res, err := rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{s, last}, Count: count, Block: tailBlock}).Result()
		select {
		case <-ctx.Done():
			return nil // interrupted: a normal end
		default:
		}
		if errors.Is(err, redis.Nil) {
			continue // nothing new within tailBlock
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", s, err)
		}
		for _, xs := range res {
			for _, m := range xs.Messages {
				if err := a.printEntry(m, asJSON); err != nil {
					return err
				}
				last = m.ID
				seen++
			}
		}
	}
	return nil
}

// tailNoFollow prints the last n entries of s, or with from the first n
// after it ("$": none), and returns.
func (a *app) tailNoFollow(ctx context.Context, s, from string, n int, asJSON bool) error {
	rdb, err := a.client(ctx)
	if err != nil {
		return err
	}
	if err := streamMustExist(ctx, rdb, s); err != nil {
		return err
	}
	var msgs []redis.XMessage
	switch from {
	case "$":
	case "":
		msgs, err = rdb.XRevRangeN(ctx, s, "+", "-", int64(n)).Result()
		slices.Reverse(msgs)
	case "0":
		msgs, err = rdb.XRangeN(ctx, s, "-", "+", int64(n)).Result()
	default:
		msgs, err = rdb.XRangeN(ctx, s, "("+from, "+", int64(n)).Result()
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", s, err)
	}
	for _, m := range msgs {
		if err := a.printEntry(m, asJSON); err != nil {
			return err
		}
	}
	return nil
}

func (a *app) printEntry(m redis.XMessage, asJSON bool) error {
	fields := stringFields(m.Values)
	t, _ := idTime(m.ID)
	if asJSON {
		enc := json.NewEncoder(a.stdout) // one line per entry, unindented
		enc.SetEscapeHTML(false)
		return enc.Encode(entryJSON{ID: m.ID, Time: jsonTime(t), Fields: fields})
	}
	_, err := fmt.Fprintf(a.stdout, "%s  %s  %s\n", m.ID, fmtTime(t), fmtFields(fields, sortedKeys(fields)))
	return err
}
