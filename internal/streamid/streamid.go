// Package streamid parses, compares and formats Redis stream entry IDs
// ("<milliseconds>-<sequence>").
//
// Both parts are unsigned 64-bit integers and every operation here is exact
// over their whole range: nothing goes through float64, which is exact only
// up to 2^53 and so would merge neighbouring IDs above it.
package streamid

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// ID is a parsed stream entry ID: Ms is the millisecond part (Unix
// milliseconds for IDs Redis generates), Seq the sequence number within it.
type ID struct {
	Ms  uint64
	Seq uint64
}

// Max is the greatest stream ID, 18446744073709551615-18446744073709551615.
// Redis accepts no entry after it, so it has no [ID.Next].
var Max = ID{Ms: math.MaxUint64, Seq: math.MaxUint64}

// ErrSyntax is returned by Parse for text that is not a complete stream ID.
var ErrSyntax = errors.New("stream ID must be <milliseconds>-<sequence> with both parts unsigned 64-bit decimals")

// Parse parses a complete ID such as "1694012345678-0". Special IDs ("*",
// "$", ">", "-", "+") and incomplete IDs ("1694012345678", "5-*") are
// rejected: callers that need an exact entry need both parts. Each part
// must fit in 64 bits (at most 18446744073709551615); a larger one is
// rejected, never wrapped or rounded. Leading zeros are accepted, as Redis
// accepts them; [ID.String] drops them.
func Parse(s string) (ID, error) {
	msText, seqText, ok := strings.Cut(s, "-")
	if !ok || !isDigits(msText) || !isDigits(seqText) {
		return ID{}, ErrSyntax
	}
	ms, err := strconv.ParseUint(msText, 10, 64)
	if err != nil {
		return ID{}, ErrSyntax
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return ID{}, ErrSyntax
	}
	return ID{Ms: ms, Seq: seq}, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String formats the ID as Redis does.
func (id ID) String() string {
	return strconv.FormatUint(id.Ms, 10) + "-" + strconv.FormatUint(id.Seq, 10)
}

// Compare returns -1, 0 or +1 as id is less than, equal to or greater than
// other: by milliseconds, then by sequence, each as an unsigned 64-bit
// integer.
func (id ID) Compare(other ID) int {
	switch {
	case id.Ms < other.Ms:
		return -1
	case id.Ms > other.Ms:
		return 1
	case id.Seq < other.Seq:
		return -1
	case id.Seq > other.Seq:
		return 1
	}
	return 0
}

// Next returns the smallest ID greater than id, which is where a reader
// that has seen id resumes (XRANGE's "(id"). A sequence of 2^64-1 carries
// into the millisecond part: the ID after 5-18446744073709551615 is 6-0.
// ok is false for [Max], after which no ID exists.
func (id ID) Next() (next ID, ok bool) {
	switch {
	case id.Seq < math.MaxUint64:
		return ID{Ms: id.Ms, Seq: id.Seq + 1}, true
	case id.Ms < math.MaxUint64:
		return ID{Ms: id.Ms + 1}, true
	}
	return ID{}, false
}

// IsZero reports whether id is 0-0, which Redis never assigns to an entry.
func (id ID) IsZero() bool { return id.Ms == 0 && id.Seq == 0 }

// Time returns the wall-clock time encoded in the ID's millisecond part.
func (id ID) Time() time.Time {
	return time.UnixMilli(int64(min(id.Ms, uint64(1<<63-1))))
}

// FromTime returns the smallest ID at time t (sequence 0); times before the
// Unix epoch give 0-0.
func FromTime(t time.Time) ID {
	ms := t.UnixMilli()
	if ms < 0 {
		return ID{}
	}
	return ID{Ms: uint64(ms)}
}
