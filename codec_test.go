package redstream

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// jsonProbe has fields of the kinds a payload has: strings, numbers, a
// nested value, a slice and a map.
type jsonProbe struct {
	ID     string            `json:"id"`
	N      int64             `json:"n"`
	F      float64           `json:"f"`
	Nested *jsonProbe        `json:"nested"`
	List   []int             `json:"list"`
	Tags   map[string]string `json:"tags"`
	Raw    json.RawMessage   `json:"raw"`
}

// checkLikeUnmarshal decodes data with unmarshalJSON and with
// json.Unmarshal, each into a fresh jsonProbe, and requires the same value
// and error.
func checkLikeUnmarshal(t *testing.T, data string) {
	t.Helper()
	var got, want jsonProbe
	gotErr := unmarshalJSON([]byte(data), &got)
	wantErr := json.Unmarshal([]byte(data), &want)
	if wantErr != nil {
		assert.EqualError(t, gotErr, wantErr.Error(), "input %q", data)
		return
	}
	assert.NoError(t, gotErr, "input %q", data)
	assert.Equal(t, want, got, "input %q", data)
}

var jsonCases = []string{
	`{"id":"1","n":2,"f":2.5,"list":[1,2],"tags":{"a":"b"},"raw":{"x":[1]}}`,
	`{"nested":{"id":"in","nested":{"n":7}}}`,
	`{"id":"é\u00e9\n"}`,
	`{}`, `null`, ` {"id":"lead"}`, `{"id":"trail"} `, "{\"id\":\"nl\"}\n",
	`{"id":"a"}{"id":"b"}`, `{"id":"a"} x`, `{"id":`, ``, `   `, `[1,2]`, `"str"`, `12`,
	`{"n":"not a number","id":"kept"}`, `{"n":1e400}`, `{"id":1}`, `{"list":{}}`,
	"\xff\xfe", `{"id":"` + strings.Repeat("x", maxPooledJSON) + `"}`,
}

// TestUnmarshalJSONIsJSONUnmarshal holds the pooled decoder to
// json.Unmarshal's results, errors included, input after input, so that
// nothing of one payload leaks into the next.
func TestUnmarshalJSONIsJSONUnmarshal(t *testing.T) {
	for range 3 {
		for _, data := range jsonCases {
			checkLikeUnmarshal(t, data)
		}
	}
	// Decoded into a value that already holds fields, as a retried decode
	// would not, but a caller of Unmarshal might.
	got := jsonProbe{ID: "old", Tags: map[string]string{"k": "v"}}
	want := got
	want.Tags = map[string]string{"k": "v"}
	data := `{"n":3,"tags":{"a":"b"}}`
	assert.Equal(t, json.Unmarshal([]byte(data), &want), unmarshalJSON([]byte(data), &got))
	assert.Equal(t, want, got)
}

func FuzzUnmarshalJSON(f *testing.F) {
	for _, data := range jsonCases {
		f.Add(data, `{"id":"next"}`)
	}
	f.Fuzz(func(t *testing.T, first, second string) {
		checkLikeUnmarshal(t, first)
		checkLikeUnmarshal(t, second)
	})
}
