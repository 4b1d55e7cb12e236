package redstream

import (
	"errors"
	"fmt"
	"strings"
)

// Encoding one publish into the fields of a stream entry: headers, the
// key, then the payload field.

// encode returns the entry's fields as name, value pairs: headers first,
// then pc's key, then the payload field (the layout the README shows).
func (p *Producer[T]) encode(v T, extra []string, pc *publishConfig) ([]any, error) {
	if p.fields {
		return p.encodeFields(any(v).(Fields), extra, pc)
	}
	fromPayload := p.payloadHeaders(v)
	data, err := p.cfg.codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("redstream: encode payload for %s: %w", p.stream, err)
	}
	n := len(fromPayload) + len(extra)/2
	values := make([]any, 0, 2*n+2)
	if n > 0 || pc.hasKey {
		seen := make(map[string]struct{}, n+1)
		for name, value := range fromPayload {
			if values, err = appendUserHeader(values, seen, name, value, p.cfg.payloadField); err != nil {
				return nil, err
			}
		}
		for i := 0; i < len(extra); i += 2 {
			if values, err = appendUserHeader(values, seen, extra[i], extra[i+1], p.cfg.payloadField); err != nil {
				return nil, err
			}
		}
		if pc.hasKey {
			values = append(values, KeyField, pc.key)
		}
	}
	return append(values, p.payloadFieldArg, data), nil
}

// headerSource tells how T declares headers ([HeaderSource]): on T, on
// *T, or not at all.
type headerSource uint8

const (
	noHeaderSource headerSource = iota
	valueHeaderSource
	pointerHeaderSource
)

// headerSourceOf finds T's way of declaring headers, once per producer:
// a payload converted to an interface to look takes an allocation.
func headerSourceOf[T any]() headerSource {
	var zero T
	if _, ok := any(zero).(HeaderSource); ok {
		return valueHeaderSource
	}
	if _, ok := any(&zero).(HeaderSource); ok {
		// Headers declared on *T count for a Producer of T too.
		return pointerHeaderSource
	}
	return noHeaderSource
}

// payloadHeaders returns the headers v declares, if T is a [HeaderSource].
func (p *Producer[T]) payloadHeaders(v T) map[string]string {
	switch p.headerSource {
	case valueHeaderSource:
		return any(v).(HeaderSource).Headers()
	case pointerHeaderSource:
		// A copy of its own, so that v stays off the heap on the other
		// paths.
		c := v
		return any(&c).(HeaderSource).Headers()
	}
	return nil
}

// appendUserHeader is appendHeader for a header of the caller ([WithHeader],
// [HeaderSource], [WithContextHeaders]), which must not be named like
// KeyField either: consumers read that field as the message's key, while
// the producer routes by the key of WithKey or WithKeyFunc, so a key set as
// a header would order the message under one key in another key's
// partition, or under a key it was not routed by.
func appendUserHeader(values []any, seen map[string]struct{}, name, value, payloadField string) ([]any, error) {
	if name == KeyField {
		return nil, fmt.Errorf("%w: header %q would overwrite the message key field: set the key with WithKey or WithKeyFunc", ErrInvalidOption, name)
	}
	if err := checkNotReserved("header", name); err != nil {
		return nil, err
	}
	return appendHeader(values, seen, name, value, payloadField)
}

// ReservedFieldPrefix starts the names of the fields redstream writes and
// reads itself ([RetryGroupField], [AttemptsField], [RetryOfField],
// [ScheduleIDField], [DueField]): a producer refuses headers and [Fields]
// named with it. A user's field of that name could make the stream's
// groups acknowledge a message without handling it, or count attempts it
// never had.
const ReservedFieldPrefix = "redstream-"

// checkNotReserved refuses a field name under ReservedFieldPrefix.
func checkNotReserved(what, name string) error {
	if strings.HasPrefix(name, ReservedFieldPrefix) {
		return fmt.Errorf("%w: %s %q: names starting with %q are redstream's own (drop it when copying an entry from a stream)", ErrInvalidOption, what, name, ReservedFieldPrefix)
	}
	return nil
}

// encodeFields writes an untyped payload as the entry's fields. Its own
// fields may include KeyField (an entry copied from a stream), which then
// is its key; a header may not, and a different key may not overwrite it.
func (p *Producer[T]) encodeFields(f Fields, extra []string, pc *publishConfig) ([]any, error) {
	values := make([]any, 0, 2*len(f)+len(extra)+2)
	seen := make(map[string]struct{}, len(f)+len(extra)/2+1)
	var err error
	for name, value := range f {
		if name == "" {
			return nil, fmt.Errorf("%w: empty field name", ErrInvalidOption)
		}
		if err := checkNotReserved("field", name); err != nil {
			return nil, err
		}
		seen[name] = struct{}{}
		values = append(values, name, value)
	}
	for i := 0; i < len(extra); i += 2 {
		if values, err = appendUserHeader(values, seen, extra[i], extra[i+1], ""); err != nil {
			return nil, err
		}
	}
	if own, ok := f[KeyField]; pc.hasKey && (!ok || own != pc.key) {
		// A key the entry does not carry already; a different one is
		// refused as given twice.
		if values, err = appendHeader(values, seen, KeyField, pc.key, ""); err != nil {
			return nil, err
		}
	}
	if len(values) == 0 {
		return nil, errors.New("redstream: cannot publish an entry with no fields")
	}
	return values, nil
}

// appendHeader adds one header field, refusing names that would overwrite
// the payload or another header.
func appendHeader(values []any, seen map[string]struct{}, name, value, payloadField string) ([]any, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty header name", ErrInvalidOption)
	}
	if name == payloadField {
		return nil, fmt.Errorf("%w: header %q would overwrite the payload field", ErrInvalidOption, name)
	}
	if _, dup := seen[name]; dup {
		return nil, fmt.Errorf("%w: header %q given twice", ErrInvalidOption, name)
	}
	seen[name] = struct{}{}
	return append(values, name, value), nil
}
