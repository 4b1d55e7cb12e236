package dashboard

import (
	"errors"
	"html/template"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redstream/redstream/internal/opsview"
)

// field is one field of an entry, for display. Values are shown as text
// (html/template escapes them); a value that is not valid UTF-8 is shown
// Go-quoted, so binary payloads are visible byte for byte.
type field struct {
	Name, Value string
	Cut         int // bytes of the value not shown
}

// fieldList is what a page shows of an entry's fields: entries are
// written by anyone who can XADD, and a megabyte value or ten thousand
// fields must not make a page (fetched again every refresh) megabytes
// long. The first fields by name are shown, each value cut at
// maxShownValue bytes, until maxShownEntry bytes or maxShownFields fields;
// More counts the fields left out.
type fieldList struct {
	List []field
	More int
}

// Bounds of what a page shows of one entry; a page shows at most
// [WithPageSize] entries.
const (
	maxShownName   = 256     // bytes of a field's name
	maxShownKey    = 120     // bytes of a stream's or group's name in a heading or a list
	maxShownValue  = 2 << 10 // bytes of one value
	maxShownEntry  = 4 << 10 // bytes of all the names and values of an entry
	maxShownFields = 32
)

// fieldsOf returns an entry's fields sorted by name, bounded.
func fieldsOf(values map[string]any) fieldList {
	return sortedFields(opsview.StringFields(values))
}

func sortedFields(m map[string]string) fieldList {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	var out fieldList
	budget := maxShownEntry
	for _, k := range names {
		if len(out.List) == maxShownFields || budget <= 0 {
			out.More++
			continue
		}
		name := clip(k, min(maxShownName, budget))
		if len(name) < len(k) {
			name += "…"
		}
		budget -= len(name)
		v := m[k]
		value := clip(v, max(0, min(maxShownValue, budget)))
		budget -= len(value)
		out.List = append(out.List, field{Name: name, Value: value, Cut: len(v) - len(value)})
	}
	return out
}

// clip returns s cut to at most n bytes, at a rune boundary when s is
// text (a value cut inside a rune would turn invalid and show quoted).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i]
		}
	}
	return s[:n]
}

// clipText is clip for a line of text such as an error, marked when cut.
func clipText(s string) string {
	if c := clip(s, maxShownValue); len(c) < len(s) {
		return c + "…"
	}
	return s
}

// keyName shows a stream's name binary-safe and, when long, cut with an
// ellipsis: a key of thousands of bytes would fill the page (the full name
// is in the page's links and, in lists, the title attribute).
func keyName(s string) string { return clipKey(binarySafe(s)) }

// clipKey cuts s to maxShownKey bytes, marked when cut.
func clipKey(s string) string {
	if c := clip(s, maxShownKey); len(c) < len(s) {
		return c + "…"
	}
	return s
}

// binarySafe shows s as it is when it is valid UTF-8, Go-quoted otherwise.
func binarySafe(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strconv.Quote(s)
}

func idTime(id string) (time.Time, bool) { return opsview.IDTime(id) }

const timeLayout = "2006-01-02 15:04:05 UTC"

var funcs = template.FuncMap{
	"shown":    shown,
	"clip":     clipText,
	"bin":      binarySafe,
	"key":      keyName,
	"sorted":   sortedFields,
	"duration": opsview.Duration,
	"idtime": func(id string) string {
		if t, ok := idTime(id); ok {
			return t.UTC().Format(timeLayout)
		}
		return "-"
	},
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(timeLayout)
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return opsview.Duration(time.Since(t)) + " ago"
	},
	"ms":    func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) },
	"count": count,
}

// count is n and noun, with an s unless n is 1: "1 stream", "2 streams".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// shown is err's message for a page: where Redis is (an address, a host
// name, the resolver's) is the service's business, and the dashboard
// promises never to show it, so a network error is told by what failed.
func shown(err error) string {
	msg := err.Error()
	var op *net.OpError
	if errors.As(err, &op) {
		inner := "network error"
		if op.Err != nil {
			inner = op.Err.Error()
		}
		msg = strings.ReplaceAll(msg, op.Error(), op.Op+": "+inner)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		msg = strings.ReplaceAll(msg, dns.Error(), "lookup: "+dns.Err)
	}
	// Redis 7.2 and Valkey name the user in a refusal ("NOPERM User alice
	// has no permissions to run ..."); Redis 7.0 says "this user".
	return namedUser.ReplaceAllString(msg, "${1}this user has no permissions")
}

// namedUser finds the user's name in an ACL refusal.
var namedUser = regexp.MustCompile(`(NOPERM )User \S+ has no permissions`)
