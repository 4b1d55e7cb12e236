package redstream

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/redstream/redstream/internal/slot"
	"github.com/redstream/redstream/internal/streamid"
)

// DeadLetterPrefix starts every dead-letter stream key; see [DeadLetterKey].
const DeadLetterPrefix = "dead-letter:"

// Message is one stream entry as a handler sees it.
type Message[T any] struct {
	// ID is the entry's stream ID, such as "1694012345678-0".
	ID string
	// Stream is the stream key the entry was read from.
	Stream string
	// Payload is the decoded payload field. For a handler of [Fields] it
	// holds every field of the entry.
	Payload T
	// Deliveries is how many times the entry has been delivered to the group,
	// this delivery included: 1 on the first delivery.
	Deliveries int64

	values map[string]any // the entry's fields as go-redis read them
}

// Header returns the value of the entry field name, such as a header
// written next to the payload, or "" when it is absent.
func (m *Message[T]) Header(name string) string {
	s, _ := m.values[name].(string)
	return s
}

// Fields returns every field of the entry as stored, the payload field and
// headers included, in a new map the caller may keep.
func (m *Message[T]) Fields() map[string]string {
	fields := make(map[string]string, len(m.values))
	for k, v := range m.values {
		fields[k], _ = v.(string)
	}
	return fields
}

// Time returns the time encoded in the entry's ID: when Redis appended it
// (for auto-generated IDs), to the millisecond. It returns the zero Time when
// the ID does not parse.
func (m *Message[T]) Time() time.Time {
	id, err := streamid.Parse(m.ID)
	if err != nil {
		return time.Time{}
	}
	return id.Time()
}

// StreamName builds a stream key following the service:entity:action
// convention, such as "orders:order:created". Each part must be non-empty
// and contain no ':', braces, spaces or control characters; the error wraps
// [ErrInvalidStreamName].
func StreamName(service, entity, action string) (string, error) {
	for _, part := range [...]struct{ what, text string }{
		{"service", service}, {"entity", entity}, {"action", action},
	} {
		if part.text == "" {
			return "", fmt.Errorf("%w: %s part is empty", ErrInvalidStreamName, part.what)
		}
		if i := strings.IndexFunc(part.text, func(r rune) bool {
			return r == ':' || r == '{' || r == '}' || unicode.IsSpace(r) || unicode.IsControl(r)
		}); i >= 0 {
			return "", fmt.Errorf("%w: %s part %q contains %q", ErrInvalidStreamName, part.what, part.text, part.text[i:i+1])
		}
	}
	return service + ":" + entity + ":" + action, nil
}

// ValidateStream reports whether redstream can use stream as a stream key:
// it must be non-empty, and braces in it must either form a Redis Cluster
// hash tag ("{...}" with text inside) or be only opening braces, so that
// [DeadLetterKey] can put the dead-letter stream in the same hash slot. The
// error wraps [ErrInvalidStreamName].
func ValidateStream(stream string) error {
	if stream == "" {
		return fmt.Errorf("%w: empty", ErrInvalidStreamName)
	}
	if _, ok := slot.Tag(stream); !ok && strings.ContainsRune(stream, '}') {
		return fmt.Errorf("%w: %q has a '}' but no non-empty {hash tag}, so no dead-letter key can share its cluster slot", ErrInvalidStreamName, stream)
	}
	return nil
}

// DeadLetterKey returns the key of stream's dead-letter stream. It lives in
// the same Redis Cluster hash slot as stream, so one script can move an
// entry between them: "orders:order:created" gives
// "dead-letter:{orders:order:created}", and a stream that already has a hash
// tag keeps it ("orders:{eu}:created" gives "dead-letter:orders:{eu}:created").
// The result is meaningful only for streams that [ValidateStream] accepts.
func DeadLetterKey(stream string) string {
	if _, ok := slot.Tag(stream); ok {
		return DeadLetterPrefix + stream
	}
	return DeadLetterPrefix + "{" + stream + "}"
}
