// Package dashboard is a web dashboard of redstream's streams that a
// service mounts in its own HTTP server, and that 'redstream web' serves:
//
//	d, err := dashboard.New(rdb, dashboard.WithMiddleware(requireOperator))
//	if err != nil {
//		return err
//	}
//	defer d.Close() // stops the sampler
//	mux.Handle("/redstream/", http.StripPrefix("/redstream", d))
//
// There is no function returning a bare [http.Handler]: the charts need
// the sampler, a goroutine, and a goroutine needs an owner to stop it.
// [New] starts it and [Dashboard.Close] stops it, as [http.Server] has
// Shutdown.
//
// # Pages
//
//   - The overview: every stream found by SCAN with TYPE stream (on every
//     master of a cluster), plus those named with [WithStreams], with
//     partitions (<base>:p0, <base>:p1, ...) summed under their base
//     name. For each: length, groups, the worst group's lag, pending
//     entries, the oldest pending entry's age, dead letters, scheduled
//     messages and paused groups. The worst lag comes first; a lag higher,
//     or dead letters more, than a minute ago are shown in red. The figures
//     of all plain streams are read in two pipelined round trips, however
//     many there are (a partitioned stream costs [redstream.InspectPartitions]).
//     A page loaded reads them; an open overview updating itself shows
//     the sampler's latest figures instead while they are younger than
//     [WithRefresh] and no action was taken since they were read: many
//     open tabs cost Redis what the sampler does.
//   - A stream: its groups (lag, pending, oldest pending entry, partition
//     lease owner, pause) and consumers ([redstream.Inspect]), and charts
//     of its lag, pending entries and throughput over time.
//   - A group's pending entries, a page at a time, with their fields, owner,
//     idle time and deliveries; acknowledge, dead-letter or claim them.
//   - Dead letters, newest first, a page at a time by ID cursor, filtered
//     by reason, error text and time; replay one, the selected or all of
//     them (at a rate), or delete them.
//   - The tail: the newest entries of a stream.
//
// Pages update themselves without a reload (a few lines of script fetch
// the page again and swap the parts that change, every [WithRefresh]).
// Assets are embedded: the dashboard works offline and loads nothing from
// elsewhere.
//
// # Charts
//
// The charts come from the sampler, the dashboard's one goroutine: every
// [WithSampleInterval] it reads every stream's figures, as the overview
// does, and keeps the last [WithRingSize] samples of each stream in memory
// (about 48 bytes a sample a stream; a stream that disappears loses its
// samples). No external time-series store is needed, and history starts
// when the dashboard does. [New] starts the sampler and [Dashboard.Close]
// stops it. The charts are SVG drawn on the server, not a JavaScript
// charting library: a polyline needs no script, costs no asset bytes and
// passes the strict Content-Security-Policy; the values drawn are in each
// chart's data-values attribute.
//
// # Safety
//
// The dashboard is read-only unless [WithActions] is given: without it no
// action button is shown, and every action request is answered with 403
// Forbidden. Authentication is the service's: wrap the dashboard with
// [WithMiddleware] (or mount it behind the service's own). Every action is
// a POST carrying the dashboard's random CSRF token in the form and in a
// SameSite=Strict, HttpOnly cookie (Secure when the request came over TLS
// to this server; behind a proxy that ends TLS, have the proxy set it),
// compared in constant time, and a request the browser marks as coming
// from another origin is refused ([http.CrossOriginProtection]); destructive
// actions (acknowledge, dead-letter, delete, replay all) ask for
// confirmation on a page of their own first. Pages are html/template, so
// entry fields (attacker-controlled) are shown as text; values that are
// not valid UTF-8 are shown Go-quoted. Responses carry a
// Content-Security-Policy without inline script, nosniff and
// frame-ancestors 'none'. The dashboard never shows the Redis address,
// user or password. A page shows at most 32 fields of an entry, 2 KiB of
// a value and 4 KiB in all, and says what it left out: entries are
// written by whoever can write to the stream.
//
// # Degrading
//
// A Redis user without SCAN sees the streams named with [WithStreams] and
// a note; a server that does not report a group's lag (before Redis 7, or
// after deletions) has it counted by [redstream.Inspect]; keys the user
// may not read (schedules, pause and lease keys) show as unknown. When
// Redis is down or refuses the dashboard (a wrong password), pages answer
// 502 Bad Gateway with the error (less where Redis is), and the charts
// show no samples for that time. The README's ACL table lists the
// commands the read-only dashboard needs; a test runs it as such a user.
//
// A Dashboard is safe for concurrent use; it never closes the Redis
// client it was given.
package dashboard
