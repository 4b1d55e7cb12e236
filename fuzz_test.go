package redstream

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecodeMessage feeds arbitrary entry fields to the decoding a typed
// and an untyped handler get: it never panics, a failure is always a
// *DecodeError naming the entry, and an untyped handler gets every field.
func FuzzDecodeMessage(f *testing.F) {
	f.Add("payload", `{"id":"1","userId":"u","amount":2.5}`, "orderId", "1")
	f.Add("payload", `{"id":`, "", "")
	f.Add("other", `{}`, "payload", "null")
	f.Add("payload", "\xff\xfe", "dead-letter:reason", "x")
	f.Add("payload", `{"amount":"not a number"}`, "k", "v")
	f.Add("payload", `[1,2,3]`, "payload", `{"id":"dup"}`)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		values := map[string]any{k1: v1, k2: v2}
		cfg := defaultCommon()
		m, err := decodeMessage[Order](cfg, false, "s", "1-1", 1, values, nil)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.ID != "1-1" || de.Stream != "s" || de.Field != cfg.payloadField {
				t.Fatalf("decode error is not a *DecodeError for the entry: %#v", err)
			}
			if !strings.HasPrefix(err.Error(), "redstream: decode s 1-1") {
				t.Fatalf("error text %q", err.Error())
			}
		} else if m.ID != "1-1" || m.Header(k1) != v1 && k1 != k2 {
			t.Fatalf("decoded message lost its identity or headers: %+v", m)
		}
		raw, err := decodeMessage[Fields](cfg, true, "s", "1-1", 1, values, nil)
		if err != nil {
			t.Fatalf("untyped decoding failed: %v", err)
		}
		if len(raw.Payload) != len(values) {
			t.Fatalf("untyped payload has %d fields, want %d", len(raw.Payload), len(values))
		}
	})
}

// escapeField is the rule the dead-letter script applies to an entry's own
// field names (internal/scripts/deadletter.lua); TestBadInput checks the
// script does the same on real Redis.
func escapeField(name string) string {
	if strings.HasPrefix(name, deadLetterMetaPrefix) {
		return deadLetterFieldPrefix + name
	}
	return name
}

// FuzzParseDeadLetter checks that metadata parsing never panics and that an
// entry's own fields, however named, come back unchanged from a dead-letter
// entry built by the script's rule.
func FuzzParseDeadLetter(f *testing.F) {
	f.Add("payload", "{}", "dead-letter:reason", "mine", "5", "1694012345678")
	f.Add("dead-letter:field:x", "y", "orderId", "1", "x", "junk")
	f.Add("", "", "dead-letter:", "", "-1", "")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2, deliveries, when string) {
		own := map[string]string{n1: v1, n2: v2}
		values := map[string]any{
			metaStream: "s", metaID: "1-1", metaGroup: "g", metaConsumer: "c",
			metaDeliveries: deliveries, metaReason: ReasonDecode, metaError: "e", metaTime: when,
		}
		for k, v := range own {
			values[escapeField(k)] = v
		}
		d := parseDeadLetter("2-2", values)
		if d.Stream != "s" || d.OriginID != "1-1" || d.Reason != ReasonDecode {
			t.Fatalf("metadata lost: %+v", d)
		}
		if len(d.Fields) != len(own) {
			t.Fatalf("fields %v, want %v", d.Fields, own)
		}
		for k, v := range own {
			if d.Fields[k] != v {
				t.Fatalf("field %q: got %q, want %q", k, d.Fields[k], v)
			}
		}
	})
}
