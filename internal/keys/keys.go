// Package keys names the keys redstream keeps next to a stream, in the
// stream's hash slot. The library, the admin CLI and the dashboard read
// the same keys, so their names are built in one place.
package keys

import "github.com/redstream/redstream/internal/slot"

// Slotted returns stream as the start of a key in its hash slot: the
// stream itself when it has a {hash tag}, else "{stream}".
func Slotted(stream string) string {
	if _, ok := slot.Tag(stream); ok {
		return stream
	}
	return "{" + stream + "}"
}

// Lease is the key of stream's partition lease in group: it holds the
// name of the consumer reading stream for the group
// (WithExclusivePartitions).
func Lease(stream, group string) string {
	return Slotted(stream) + ":redstream-lease:" + group
}

// Paused is the key that pauses group's consumption of stream; it holds
// the time of the pause (RFC 3339).
func Paused(stream, group string) string {
	return Slotted(stream) + ":redstream-paused:" + group
}

// Scheduled is the sorted set of stream's scheduled messages (WithDelay),
// scored by due time in milliseconds of the server's clock.
func Scheduled(stream string) string { return Slotted(stream) + ":redstream-scheduled" }
