package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

// partitionsFlag is the -partitions flag: how many partitions the stream
// named on the command line has. It checks the range as it is set, so that
// a bad value is reported like any other bad flag value, before Redis is
// called; left out, it is 0: the stream is not partitioned.
type partitionsFlag int

func (p *partitionsFlag) String() string {
	if p == nil {
		return "0"
	}
	return strconv.Itoa(int(*p))
}

func (p *partitionsFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	switch {
	case err == nil && n == 0:
		return fmt.Errorf("want a number of partitions from 1 to %d; leave -partitions out for a stream that is not partitioned", redstream.MaxPartitions)
	case err != nil || n < 1 || n > redstream.MaxPartitions:
		return fmt.Errorf("want a number of partitions from 1 to %d", redstream.MaxPartitions)
	}
	*p = partitionsFlag(n)
	return nil
}

// partitionsVar defines the -partitions flag on fs.
func partitionsVar(fs *flag.FlagSet) *int {
	n := new(int)
	fs.Var((*partitionsFlag)(n), "partitions", fmt.Sprintf(
		"STREAM is the base name of a stream spread over `N` partitions (1 to %d): STREAM:p0 to STREAM:p<N-1>", redstream.MaxPartitions))
	return n
}

// partitionNames validates a base name given with -partitions and returns
// its partition streams.
func partitionNames(base string, n int) ([]string, error) {
	names, err := redstream.Partitions(base, n)
	if err != nil {
		// A bad name, or one with a hash tag: the command line is wrong.
		return nil, &usageError{msg: err.Error()}
	}
	return names, nil
}

// span names a run of keys in messages: "a:p0 to a:p3", or the one key.
func span(keys []string) string {
	if len(keys) == 1 {
		return keys[0]
	}
	return keys[0] + " to " + keys[len(keys)-1]
}

// partitionsOf describes a partitioned stream in messages.
func partitionsOf(base string, n int) string {
	if n == 1 {
		return "the 1 partition of " + base
	}
	return fmt.Sprintf("the %d partitions of %s", n, base)
}

// noPartitions is the error for a partitioned stream none of whose
// partitions exists, worded as [noStream] is. When base itself is a
// stream, the likely mistake is -partitions, and the message says so.
func noPartitions(ctx context.Context, rdb redis.UniversalClient, base string, names []string) error {
	msg := fmt.Sprintf("stream %s does not exist: none of its %s (%s) exists", base, plural(int64(len(names)), "partition", "partitions"), span(names))
	if typ, err := keyType(ctx, rdb, base); err == nil && typ == "stream" {
		msg += fmt.Sprintf("; %s is a stream that is not partitioned: leave out -partitions", base)
	}
	return &missingStreamError{msg: msg}
}

// partitionsMustExist checks that each partition of base is a stream or
// missing, and that at least one exists (or, with deadLetters, has a
// dead-letter stream), so that commands on a mistyped name or a wrong
// partition count fail instead of showing nothing. It asks in one pipeline.
func partitionsMustExist(ctx context.Context, rdb redis.UniversalClient, base string, names []string, deadLetters bool) error {
	types := make([]*redis.StatusCmd, len(names))
	dead := make([]*redis.IntCmd, len(names))
	_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, name := range names {
			types[i] = pipe.Type(ctx, name)
			if deadLetters {
				// One key per EXISTS: the keys lie in different cluster slots.
				dead[i] = pipe.Exists(ctx, redstream.DeadLetterKey(name))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("type of the partitions of %s: %w", base, err)
	}
	found := false
	for i, name := range names {
		if typ := types[i].Val(); typ != "none" {
			if err := mustBeStream(name, typ); err != nil {
				return err
			}
			found = true
		}
		if deadLetters && dead[i].Val() > 0 {
			found = true
		}
	}
	if !found {
		return noPartitions(ctx, rdb, base, names)
	}
	return nil
}
