// Package serverinfo reads what Redis servers of different versions (and
// miniredis) report alike, for the library and the dashboard.
package serverinfo

// LagReported reports whether the lag XINFO GROUPS gave for a group
// (lag, as go-redis read it) is the server's count, given the stream's
// entries-added and length from XINFO STREAM. Redis 7 and Valkey send it,
// or nil (go-redis: -1) when entries were deleted in between. Redis 6.2
// sends no lag, which go-redis reads as 0, and miniredis sends the
// stream's length. Neither sends entries-added, which on Redis 7 counts
// every entry ever added, so a stream holding entries without it has a lag
// to count.
func LagReported(lag, entriesAdded, length int64) bool {
	return lag >= 0 && (entriesAdded > 0 || length == 0)
}
