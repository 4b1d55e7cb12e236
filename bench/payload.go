package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// payloadSize is the length of every payload's JSON encoding.
const payloadSize = 256

// payloadField is the entry field the raw side writes and reads, the same
// as redstream's default (redstream.DefaultPayloadField).
const payloadField = "payload"

// payload is what both sides publish and decode. Pad is sized per message
// so that the JSON encoding is exactly payloadSize bytes.
type payload struct {
	ID int64 `json:"id"`
	// SentAt is the publish time in Unix nanoseconds in the latency
	// workload, and 0 elsewhere.
	SentAt int64  `json:"sent_at"`
	Pad    string `json:"pad"`
}

var (
	padding = strings.Repeat("x", payloadSize)
	// payloadFixed is the encoding's length without the digits of ID and
	// SentAt and without Pad.
	payloadFixed = len(`{"id":,"sent_at":,"pad":""}`)
)

func newPayload(id, sentAt int64) payload {
	return payload{ID: id, SentAt: sentAt, Pad: padding[:payloadSize-payloadFixed-digits(id)-digits(sentAt)]}
}

func digits(v int64) int {
	var buf [20]byte
	return len(strconv.AppendInt(buf[:0], v, 10))
}

// checkPayload verifies that payloads encode to payloadSize bytes across
// the range of IDs and times the workloads use.
func checkPayload() error {
	for _, p := range []payload{
		newPayload(0, 0),
		newPayload(9_999_999, 0),
		newPayload(123, time.Now().UnixNano()),
	} {
		data, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("encode payload: %w", err)
		}
		if len(data) != payloadSize {
			return fmt.Errorf("payload encodes to %d bytes, want %d: %s", len(data), payloadSize, data)
		}
	}
	return nil
}
