package main

import (
	"context"
	"fmt"

	"github.com/redstream/redstream"
)

// The dead letters of a partitioned stream (-partitions N): one
// dead-letter stream per partition, listed, counted, replayed and purged
// together.

// deadLetterSet is what a dlq command acts on: the dead-letter stream of a
// stream, or those of every partition of a partitioned stream, in turn.
type deadLetterSet struct {
	name       string // for messages: the stream, or "the N partitions of BASE"
	dlqs       []*redstream.DeadLetters
	partitions []string // the partition of each of dlqs; nil for one stream
}

// deadLetterSet returns the dead-letter streams of the named stream, or
// with partitions > 0 of its partitions.
func (a *app) deadLetterSet(ctx context.Context, name string, partitions int) (*deadLetterSet, error) {
	if partitions > 0 {
		return a.partitionDeadLetters(ctx, name, partitions)
	}
	dlq, err := a.deadLetters(ctx, name)
	if err != nil {
		return nil, err
	}
	return &deadLetterSet{name: name, dlqs: []*redstream.DeadLetters{dlq}}, nil
}

// partitionDeadLetters returns the dead-letter streams of the n partitions
// of base, after checking, as deadLetters does, that some partition or its
// dead-letter stream exists.
func (a *app) partitionDeadLetters(ctx context.Context, base string, n int) (*deadLetterSet, error) {
	names, err := partitionNames(base, n)
	if err != nil {
		return nil, err
	}
	rdb, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	if err := partitionsMustExist(ctx, rdb, base, names, true); err != nil {
		return nil, err
	}
	set := &deadLetterSet{name: partitionsOf(base, n), dlqs: make([]*redstream.DeadLetters, n), partitions: names}
	for i, name := range names {
		if set.dlqs[i], err = redstream.NewDeadLetters(rdb, name); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// keys names the dead-letter streams in messages.
func (s *deadLetterSet) keys() string {
	keys := make([]string, len(s.dlqs))
	for i, d := range s.dlqs {
		keys[i] = d.Key()
	}
	return span(keys)
}

// len returns how many dead letters the set holds.
func (s *deadLetterSet) len(ctx context.Context) (int64, error) {
	var total int64
	for _, d := range s.dlqs {
		n, err := d.Len(ctx)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// replay replays each dead-letter stream in turn, stopping at the first
// error, and returns how many dead letters went back.
func (s *deadLetterSet) replay(ctx context.Context, opts []redstream.ReplayOption) (int, error) {
	total := 0
	for _, d := range s.dlqs {
		n, err := d.Replay(ctx, opts...)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// purge deletes each dead-letter stream in turn, stopping at the first
// error, and returns how many dead letters went.
func (s *deadLetterSet) purge(ctx context.Context) (int64, error) {
	var total int64
	for _, d := range s.dlqs {
		n, err := d.Purge(ctx)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// partitionPage is one partition's part of a listing.
type partitionPage struct {
	stream  string
	key     string
	letters []redstream.DeadLetter
	next    string
	total   int64
}

type partitionPageJSON struct {
	Stream           string `json:"stream"`
	DeadLetterKey    string `json:"dead_letter_key"`
	DeadLetterLength int64  `json:"dead_letter_length"`
	Next             string `json:"next"`
}

type partitionDeadLettersJSON struct {
	DeadLetters []deadLetterJSON `json:"dead_letters"`
	// Next is always "": each partition pages on its own.
	Next       string              `json:"next"`
	Partitions []partitionPageJSON `json:"partitions"`
}

// listPartitionDeadLetters lists a page of each partition's dead letters,
// one partition after the other. The pages are not merged by time: each
// partition's dead-letter IDs come from its own stream, and a cursor would
// have to hold one ID per partition.
func (a *app) listPartitionDeadLetters(ctx context.Context, set *deadLetterSet, opts redstream.ListOptions, asJSON bool) error {
	pages := make([]partitionPage, len(set.dlqs))
	shown, total := 0, int64(0)
	for i, dlq := range set.dlqs {
		p := &pages[i]
		p.stream, p.key = set.partitions[i], dlq.Key()
		var err error
		if p.letters, p.next, err = dlq.List(ctx, opts); err != nil {
			return err
		}
		if p.next != "" {
			if more, err := hasMore(ctx, dlq, p.next, opts.NewestFirst); err != nil {
				return err
			} else if !more {
				p.next = ""
			}
		}
		if p.total, err = dlq.Len(ctx); err != nil {
			return err
		}
		shown += len(p.letters)
		total += p.total
	}
	if asJSON {
		out := partitionDeadLettersJSON{DeadLetters: make([]deadLetterJSON, 0, shown), Partitions: make([]partitionPageJSON, len(pages))}
		for i, p := range pages {
			for j := range p.letters {
				d := toDeadLetterJSON(&p.letters[j])
				d.Stream = p.stream
				out.DeadLetters = append(out.DeadLetters, d)
			}
			out.Partitions[i] = partitionPageJSON{Stream: p.stream, DeadLetterKey: p.key, DeadLetterLength: p.total, Next: p.next}
		}
		return writeJSON(a.stdout, out)
	}
	if shown == 0 {
		_, err := fmt.Fprintf(a.stdout, "no dead letters for %s (%s)\n", set.name, set.keys())
		return err
	}
	t := newTable(a.stdout, append([]string{"STREAM"}, deadLetterHeader...)...)
	for _, p := range pages {
		for j := range p.letters {
			t.row(append([]string{p.stream}, deadLetterCells(&p.letters[j])...)...)
		}
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%d of %s of %s (at most %d of each), %s\n", shown, plural(total, "dead letter", "dead letters"), set.name, opts.Count, listOrder(opts))
	for _, p := range pages {
		if p.next != "" {
			a.printMore(p.stream, opts, p.next)
		}
	}
	return nil
}
