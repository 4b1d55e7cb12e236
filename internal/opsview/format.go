package opsview

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redstream/redstream/internal/streamid"
)

// IDTime returns the time encoded in id, or false for "" and bad IDs.
func IDTime(id string) (time.Time, bool) {
	p, err := streamid.Parse(id)
	if err != nil || p.IsZero() {
		return time.Time{}, false
	}
	return p.Time(), true
}

// Duration shows a duration compactly: "850ms", "12.3s", "4m5s",
// "3h2m", "2d4h". Negative durations (unknown) show as "-". Each unit is
// chosen after rounding, so 59m59.7s shows as "1h0m", not "60m0s".
func Duration(d time.Duration) string {
	const day = 24 * time.Hour
	if d < 0 {
		return "-"
	}
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	if r := d.Round(100 * time.Millisecond); r < time.Minute {
		return strconv.FormatFloat(r.Seconds(), 'f', 1, 64) + "s"
	}
	if r := d.Round(time.Second); r < time.Hour {
		return fmt.Sprintf("%dm%ds", r/time.Minute, r%time.Minute/time.Second)
	}
	if r := d.Round(time.Minute); r < day {
		return fmt.Sprintf("%dh%dm", r/time.Hour, r%time.Hour/time.Minute)
	}
	r := d.Round(time.Hour)
	return fmt.Sprintf("%dd%dh", r/day, r%day/time.Hour)
}

// QuoteIfNeeded returns s as it is, or Go-quoted when it is empty, is not
// valid UTF-8 or holds spaces, control characters or '=': binary field
// values stay readable and unambiguous, JSON payloads stay as they are.
func QuoteIfNeeded(s string) string {
	if s == "" || !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == '='
	}) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// StringFields converts go-redis entry values to strings.
func StringFields(values map[string]any) map[string]string {
	out := make(map[string]string, len(values))
	for k, v := range values {
		switch v := v.(type) {
		case string:
			out[k] = v
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}
