// Package redstream turns Redis Streams into a reliable message bus: typed
// producers, consumer groups served by plain handler funcs, and
// acknowledgement only after a handler succeeds.
//
// # A tour
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"}) // or a cluster/failover client
//
//	orders, err := redstream.NewProducer[Order](rdb, "orders:order:created", redstream.WithMaxLen(100_000))
//	id, err := orders.Publish(ctx, order)                                      // XADD *
//	id, err = orders.Publish(ctx, order, redstream.WithID("1694012345678-0")) // idempotent retry
//	f, err := orders.PublishAsync(ctx, order)                                  // many in flight; f.Result() later
//
//	c, err := redstream.NewConsumer(rdb, "billing", redstream.WithConcurrency(16))
//	err = redstream.Handle(c, "orders:order:created", func(ctx context.Context, m *redstream.Message[Order]) error {
//		return charge(ctx, m.Payload) // nil: XACK. error: retried with backoff. ErrDeadLetter: dead-letter now.
//	})
//	err = c.Run(ctx) // blocks; nil after a graceful drain when ctx ends, else a *ShutdownError
//
//	dlq, err := redstream.NewDeadLetters(rdb, "orders:order:created")
//	letters, next, err := dlq.List(ctx, redstream.ListOptions{NewestFirst: true})
//	n, err := dlq.Replay(ctx, redstream.ReplayAll())
//
// # The promise
//
// Delivery is at least once per consumer group while the Redis primary
// survives: a message is acknowledged (XACK) only after its handler returns
// nil. A handler error, a panic, a crash or a shutdown leaves the message in
// the group's pending entries list, and it is delivered again: a consumer
// drains its own pending entries first when it starts, so a restarted
// consumer with a stable name ([WithConsumerName]) picks up where it
// stopped. A message that keeps failing lands, once per group, in the
// stream's dead-letter stream with its reason. Duplicates happen only
// around a failure and are bounded by what
// was in flight, so handlers should be idempotent. Redis replication is
// asynchronous: a failover can lose writes Redis had acknowledged.
//
// Results tell the truth when a connection drops. XADDs are never sent
// twice behind the caller's back (go-redis would resend a command whose
// reply was lost): a publish that may or may not have been written returns
// an error wrapping [ErrUncertain]. Dead-letter moves, replays and trims
// report what Redis did even when the client resent them. A read of new
// entries whose reply was lost is not resent either: the consumer reads its
// own pending entries again at once. When Run
// returns, a nil error means everything it took in was acknowledged,
// dead-lettered or handed over to the group; otherwise a [*ShutdownError]
// says what is left pending and why. Calls that take a context return when
// it ends, whatever they wait for inside redstream.
//
// # Failures
//
// A handler's error leaves its message pending; the consumer delivers it
// again after an exponential backoff with jitter ([WithRetryBackoff]), or
// after the delay of a [RetryAfter] error (either at most [MaxDelay]),
// renewing its lease meanwhile;
// a retry due [WithLongRetryAfter] or more from now (default MinIdle) waits
// in the stream's schedule instead, freeing its in-flight room.
// After MaxDeliveries failed handler attempts ([WithMaxDeliveries],
// default 5; failures are recorded in Redis, so they outlive the consumer,
// and deliveries no handler saw do not count) the message is
// dead-lettered: one Lua script copies it, with its origin,
// group, consumer, delivery count, reason and last error, to the stream's
// dead-letter stream and acknowledges it, atomically. [ErrDeadLetter]
// dead-letters at once, [ErrDrop] acknowledges without handling, and
// entries that cannot be decoded are dead-lettered at once. [DeadLetters]
// lists, replays (at a [ReplayRate] between [MinReplayRate] and
// [MaxReplayRate]; [ErrNotReplayable] for those left in place,
// [ErrNoStream] when their stream is gone) and deletes dead letters. [WithHandlerTimeout] bounds a
// handler call; a handler's context tells why it ended ([context.Cause]):
// [ErrHandlerTimeout], [ErrShutdownTimeout] or [ErrLeaseLost].
// [WithRateLimit] limits a registration's handler starts across the whole
// group, and a handler returns [RateLimited] when its downstream pushes
// back. [Pause]
// stops a group's consumers from starting handlers of a stream until
// [Resume], without stopping the consumers.
//
// Every consumer runs a reaper that reclaims, with XAUTOCLAIM, entries
// idle for MinIdle ([WithMinIdle], default 30s) — those of consumers that
// crashed — and removes consumers idle past a TTL that hold nothing. Live
// consumers renew the lease of every message they hold (an owner-checked
// XCLAIM) every MinIdle/3, so a handler may run longer than MinIdle without
// being redelivered elsewhere. A standalone [Reaper] does the dead-lettering
// and cleanup for groups whose consumers run without one.
//
// # Batch handlers
//
// [HandleBatch] registers a [BatchHandlerFunc], which takes a slice of
// messages: a batch is handed over when it holds maxSize messages or
// maxWait after its first arrived ([WithBatch]). Returning nil
// acknowledges all, a [*BatchFailures] fails some (each failed message is
// retried alone and dead-lettered after MaxDeliveries, while the others
// are acknowledged), and any other error applies to all. With
// [WithOrderedKeys] a batch holds at most one message per key, so a key's
// messages still run one at a time, in order. Every message of a batch
// keeps its lease and takes in-flight room; at shutdown a partial batch is
// handled at once.
//
//	err = redstream.HandleBatch(c, "orders:order:created", func(ctx context.Context, msgs []*redstream.Message[Order]) error {
//		return db.InsertOrders(ctx, msgs) // one round trip; an error retries the batch's messages
//	}, redstream.WithBatch(100, 50*time.Millisecond))
//
// # Delayed delivery and publishing once
//
// [WithDelay] and [WithDeliverAt] publish a message later: it waits in
// Redis (a sorted set and a hash in the stream's hash slot) and is
// appended when due, by the Redis server's clock, never before, exactly
// once, by whichever Consumer or standalone [Reaper] of the stream polls
// first ([WithSchedulePoll], default 250ms); a wait beyond [MaxDelay]
// (100 years) is refused. The publish returns a
// schedule ID that [Producer.Cancel] takes; [Message.ScheduleID] and
// [Message.ScheduledFor] tell a handler what it was. [WithDedupeKey]
// publishes once per business key within a window ([WithDedupeWindow],
// default 24h): a second publish of the key returns the first entry's ID
// with [ErrDuplicate], and the check and the XADD are one script, which
// go-redis may safely resend after a lost reply.
//
// # Trimming and inspection
//
// [Trim] removes entries by length or age but never one a consumer group
// still needs (undelivered or pending), computing that bound and trimming
// in one Lua script; [WithTrim] runs it periodically. [Inspect] returns a
// stream's length, dead-letter length, and each group's lag, pending count,
// oldest pending entry and consumers.
//
// # Operator actions
//
// What an operator does by hand to a stuck consumer group is a function
// too (the admin CLI in cmd/redstream is a thin shell over them):
// [AckPending], [DeadLetterPending] (with reason [ReasonOperator], through
// the same atomic move a consumer uses) and [ClaimPending] act on entries of
// the group's pending entries list; [CreateGroup], [SetGroupID] (with
// [GroupStartAt] to seek by time) and [DestroyGroup] position or remove a
// group; [DeleteConsumer] moves a consumer's pending entries to another
// consumer before deleting it, so none is dropped. Ack, dead-letter and
// claim record the entries they take over from their consumer, which lets
// them go ([ErrLeaseLost]) rather than finish them from memory. Each checks that the
// stream and group exist ([ErrNoStream], [ErrNoGroup]) and reports IDs that
// are not pending ([NotPendingError]).
//
// # Web dashboard
//
// Package dashboard (github.com/redstream/redstream/dashboard) is an
// http.Handler a service mounts to show every stream with its lag,
// pending entries and dead letters, charts of them over time, and the
// operator actions above behind a read-only default and CSRF checks;
// "redstream web" serves it from the CLI.
//
// # Observability
//
// [WithObserver] reports what producers, consumers and reapers do, for
// metrics; [WithMiddleware] wraps handler calls and [WithContextHeaders]
// writes fields from the publish context, for tracing. The redstreamotel
// package implements both with OpenTelemetry; the core does not import it.
//
// # Streams and keys
//
// Stream keys follow the service:entity:action convention ([StreamName]).
// The dead-letter stream of a stream lives in the same Redis Cluster hash
// slot ([DeadLetterKey]), so scripts that touch both work on a cluster.
//
// # Scaling out
//
// Every command redstream sends touches one hash slot, so producers,
// consumers, reapers, [Trim], [Inspect] and [DeadLetters] work on a
// [redis.ClusterClient]. One stream is one key on one node; [WithPartitions]
// splits a logical stream into partition streams on different slots. The
// producer routes each message by its key ([WithKey], [WithKeyFunc],
// [PartitionOf]), so one key's messages stay in order in one partition, and
// a consumer reads every partition:
//
//	p, err := redstream.NewProducer[Order](rdb, "orders:order:created",
//		redstream.WithPartitions(16), redstream.WithKeyFunc(func(o Order) string { return o.ID }))
//	err = redstream.Handle(c, "orders:order:created", handle,
//		redstream.WithPartitions(16), redstream.WithOrderedKeys(),
//		redstream.WithExclusivePartitions())
//
// [WithOrderedKeys] handles one key's messages one at a time in stream
// order; with [WithExclusivePartitions] each partition is read by one
// consumer of the group at a time, so that order holds across the group. [WithMinReplicas] makes a publish wait until replicas have the
// write, narrowing what a failover can lose. [InspectPartitions] and
// [TrimPartitions] work over all partitions.
//
// # Payloads
//
// Payloads are encoded by a [Codec] (JSON by default) into one field
// ("payload" unless [WithPayloadField] says otherwise). Header fields can be
// written next to it with [WithHeader] or by a payload type that implements
// [HeaderSource]. For untyped use, [Fields] writes and reads the entry's
// fields as a map. Names starting with [ReservedFieldPrefix]
// ("redstream-") are the library's own and refused as headers and fields.
//
// # Testing handlers
//
// Package redstreamtest gives a handler's test a Redis (a redis-server of
// its own when one is installed, miniredis otherwise) and helpers that wait
// on what Redis holds instead of sleeping: publish and wait until a group
// handled the entries, read the dead letters, wait until nothing is
// pending, and move miniredis's clock so that reapers reclaim.
//
// # Concurrency
//
// [Producer], [DeadLetters] and [Reaper] are safe for concurrent use, and
// so are the operator actions, also while consumers of the group run. A
// [Consumer] runs its handlers on up to [WithConcurrency] goroutines at
// once (at most [ConcurrencyLimit]), with at most [WithMaxInFlight]
// messages held (read, waiting for a retry, or in a handler; at most
// [MaxInFlightLimit]). None of them ever closes the Redis client it was
// given.
package redstream
