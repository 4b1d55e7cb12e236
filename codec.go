package redstream

import (
	"bytes"
	"encoding/json"
	"sync"
	"unsafe"
)

// Codec turns payloads into the bytes stored in the payload field and back.
// Implementations must be safe for concurrent use. Unmarshal may keep data:
// it is a copy made for it.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default [Codec]: encoding/json.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Fields is the payload type for untyped use: a [Producer] of Fields writes
// the map as the entry's fields (no payload field, no codec), and a handler
// of Fields receives every field of the entry.
type Fields map[string]string

// HeaderSource is implemented by payload types that want header fields
// written next to the payload field, such as an order's orderId, userId
// and amount, so that operators and other tools can read them without decoding
// the payload. A Producer of T uses it when T or *T implements it.
// [WithHeader] adds headers per publish.
type HeaderSource interface {
	Headers() map[string]string
}

// isFields reports whether T is Fields, the untyped payload.
func isFields[T any]() bool {
	var zero T
	_, ok := any(zero).(Fields)
	return ok
}

// unmarshal decodes a payload field's text with codec. For the JSON codec
// it skips copying the text into a new byte slice: encoding/json neither
// modifies nor keeps its input. Other codecs get a copy, so they may.
func unmarshal(codec Codec, text string, v any) error {
	if _, ok := codec.(jsonCodec); ok {
		return unmarshalJSON(unsafe.Slice(unsafe.StringData(text), len(text)), v)
	}
	return codec.Unmarshal([]byte(text), v)
}

// jsonDecoder is a json.Decoder over a reader that is pointed at each
// payload in turn. json.Unmarshal sets up its decoding state anew for
// every call (three to four allocations per message on the consume
// path), which a Decoder keeps from one value to the next.
type jsonDecoder struct {
	src bytes.Reader
	dec *json.Decoder
}

var jsonDecoders = sync.Pool{New: func() any {
	d := &jsonDecoder{}
	d.dec = json.NewDecoder(&d.src)
	return d
}}

// maxPooledJSON bounds the payloads decoded with a pooled decoder, whose
// buffer grows to the largest it read and stays with it in the pool.
const maxPooledJSON = 64 << 10

// unmarshalJSON is json.Unmarshal(data, v), with a pooled decoder. A
// decoder goes back to the pool only when it read exactly one value that
// ended with data, so that nothing of data stays in it for the next. Any
// other outcome (an error, trailing bytes, even blanks) is left to
// json.Unmarshal itself, so that errors and what counts as one are
// Unmarshal's. (Where the decoder filled v before the error, Unmarshal
// fills the same fields again; v is dropped on error anyway.)
func unmarshalJSON(data []byte, v any) error {
	if len(data) > maxPooledJSON {
		return json.Unmarshal(data, v)
	}
	d := jsonDecoders.Get().(*jsonDecoder)
	d.src.Reset(data)
	start := d.dec.InputOffset()
	if err := d.dec.Decode(v); err != nil || d.dec.InputOffset()-start != int64(len(data)) {
		return json.Unmarshal(data, v)
	}
	d.src.Reset(nil)
	jsonDecoders.Put(d)
	return nil
}
