package streamid

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    ID
		wantErr bool
	}{
		{in: "1694012345678-0", want: ID{Ms: 1694012345678}},
		{in: "0-1", want: ID{Seq: 1}},
		{in: "18446744073709551615-18446744073709551615", want: ID{Ms: 1<<64 - 1, Seq: 1<<64 - 1}},
		{in: "18446744073709551616-0", wantErr: true},
		{in: "1694012345678", wantErr: true},
		{in: "1-*", wantErr: true},
		{in: "*", wantErr: true},
		{in: "$", wantErr: true},
		{in: ">", wantErr: true},
		{in: "-", wantErr: true},
		{in: "", wantErr: true},
		{in: "-1-0", wantErr: true},
		{in: "+1-0", wantErr: true},
		{in: "1-0-0", wantErr: true},
		{in: " 1-0", wantErr: true},
		{in: "1-", wantErr: true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr {
			assert.ErrorIs(t, err, ErrSyntax, "input %q", tt.in)
			continue
		}
		require.NoError(t, err, "input %q", tt.in)
		assert.Equal(t, tt.want, got)
		assert.Equal(t, tt.in, got.String(), "round trip")
	}
}

func TestCompare(t *testing.T) {
	a, b, c := ID{1, 5}, ID{2, 0}, ID{2, 1}
	assert.Equal(t, -1, a.Compare(b))
	assert.Equal(t, 1, c.Compare(b))
	assert.Equal(t, -1, b.Compare(c))
	assert.Equal(t, 0, c.Compare(ID{2, 1}))
	assert.True(t, ID{}.IsZero())
	assert.False(t, a.IsZero())
}

func TestTime(t *testing.T) {
	ts := time.UnixMilli(1694012345678)
	assert.Equal(t, ts, FromTime(ts).Time())
	assert.Equal(t, ID{}, FromTime(time.Unix(-5, 0)))
}

func TestIDNext(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{in: "0-0", want: "0-1", ok: true},
		{in: "9007199254740992-0", want: "9007199254740992-1", ok: true},
		{in: "1-9007199254740992", want: "1-9007199254740993", ok: true},
		{in: "5-18446744073709551615", want: "6-0", ok: true},
		{in: "18446744073709551615-18446744073709551614", want: "18446744073709551615-18446744073709551615", ok: true},
		{in: "18446744073709551615-18446744073709551615", ok: false},
	}
	for _, tt := range tests {
		id, err := Parse(tt.in)
		require.NoError(t, err)
		next, ok := id.Next()
		assert.Equal(t, tt.ok, ok, "%s.Next()", tt.in)
		if tt.ok {
			assert.Equal(t, tt.want, next.String(), "%s.Next()", tt.in)
		}
	}
	assert.Equal(t, "18446744073709551615-18446744073709551615", Max.String())
}
