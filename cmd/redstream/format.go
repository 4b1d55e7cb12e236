package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/redstream/redstream/internal/opsview"
	"github.com/redstream/redstream/internal/streamid"
)

// timeLayout shows the time in an entry ID, always in UTC so output does
// not depend on where the command runs.
const timeLayout = "2006-01-02 15:04:05.000 UTC"

// jsonTimeLayout is RFC 3339 in UTC with milliseconds, the precision of IDs.
const jsonTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// parseID checks a complete entry ID ("<milliseconds>-<sequence>").
func parseID(flagName, id string) error {
	if _, err := streamid.Parse(id); err != nil {
		return usagef("%s %q is not a stream entry ID: want <milliseconds>-<sequence>, such as 1700000000000-0", flagName, id)
	}
	return nil
}

// idTime returns the time encoded in id, or false for "" and bad IDs.
func idTime(id string) (time.Time, bool) { return opsview.IDTime(id) }

// fmtIDWithTime shows an ID and the time in it: "1700000000000-0 (2023-11-14
// 22:13:20.000 UTC, 3m ago)". "" shows as "-".
func fmtIDWithTime(id string, now time.Time) string {
	if id == "" {
		return "-"
	}
	t, ok := idTime(id)
	if !ok {
		return id
	}
	return fmt.Sprintf("%s (%s, %s ago)", id, t.UTC().Format(timeLayout), fmtDuration(now.Sub(t)))
}

// fmtTime shows a time in UTC, or "-" for the zero time.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(timeLayout)
}

// jsonTime is a time for JSON output: RFC 3339 in UTC, "" for the zero time.
func jsonTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(jsonTimeLayout)
}

// jsonIDTime is the time encoded in id for JSON output, "" when none.
func jsonIDTime(id string) string {
	t, _ := idTime(id)
	return jsonTime(t)
}

// fmtDuration shows a duration compactly: "850ms", "12.3s", "4m5s",
// "3h2m", "2d4h". Negative durations (unknown) show as "-". Each unit is
// chosen after rounding, so 59m59.7s shows as "1h0m", not "60m0s".
func fmtDuration(d time.Duration) string { return opsview.Duration(d) }

// dash shows "" as "-" in tables.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fmtFields shows entry fields as name=value pairs in the order of keys,
// quoting a value only when it is empty or holds spaces or control
// characters, so JSON payloads stay readable.
func fmtFields(fields map[string]string, keys []string) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quoteIfNeeded(k))
		b.WriteByte('=')
		b.WriteString(quoteIfNeeded(fields[k]))
	}
	return b.String()
}

func quoteIfNeeded(s string) string { return opsview.QuoteIfNeeded(s) }

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// stringFields converts go-redis entry values to strings.
func stringFields(values map[string]any) map[string]string { return opsview.StringFields(values) }

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

func (t *table) flush() error { return t.tw.Flush() }

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// plural returns "1 entry" or "n entries" given the singular and plural.
func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}

// durationValue is a flag.Value for durations whose parse errors say what
// is wrong (flag's own Duration says only "parse error").
type durationValue time.Duration

func (d *durationValue) String() string { return time.Duration(*d).String() }

func (d *durationValue) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 30s, 15m or 72h")
	}
	*d = durationValue(v)
	return nil
}

// durationFlag defines a duration flag with a helpful parse error.
func durationFlag(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*durationValue)(p), name, usage)
}

// countFlag is a -n flag: a positive number of entries.
func countFlag(fs *flag.FlagSet, def int, what string) *int {
	return fs.Int("n", def, "show at most `N` "+what)
}

func checkCount(n int) error {
	if n <= 0 {
		return usagef("-n must be positive, got %d", n)
	}
	return nil
}
