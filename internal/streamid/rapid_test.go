package streamid

import (
	"math"
	"math/big"
	"testing"

	"pgregory.net/rapid"
)

// two53 is where float64 stops being exact: the first boundary an ID part
// handled as a Lua or JSON number breaks at.
const two53 = uint64(1) << 53

// part draws one ID part, mostly near the values where arithmetic breaks:
// 0, 2^53 and 2^64-1, with a few arbitrary values for the rest of the range.
func part() *rapid.Generator[uint64] {
	return rapid.OneOf(
		rapid.Uint64Range(0, 3),
		rapid.Custom(func(t *rapid.T) uint64 { return two53 - 3 + rapid.Uint64Range(0, 6).Draw(t, "d") }),
		rapid.Custom(func(t *rapid.T) uint64 { return math.MaxUint64 - rapid.Uint64Range(0, 3).Draw(t, "d") }),
		rapid.Uint64(),
	)
}

// anyID draws IDs whose parts come from part.
func anyID() *rapid.Generator[ID] {
	return rapid.Custom(func(t *rapid.T) ID {
		return ID{Ms: part().Draw(t, "ms"), Seq: part().Draw(t, "seq")}
	})
}

// toBig maps id to ms*2^64 + seq, the order Redis keeps entries in.
func toBig(id ID) *big.Int {
	n := new(big.Int).SetUint64(id.Ms)
	n.Lsh(n, 64)
	return n.Add(n, new(big.Int).SetUint64(id.Seq))
}

func TestIDCompareMatchesBigIntegers(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := anyID().Draw(t, "a"), anyID().Draw(t, "b")
		if got, want := a.Compare(b), toBig(a).Cmp(toBig(b)); got != want {
			t.Fatalf("%v.Compare(%v) = %d, want %d", a, b, got, want)
		}
	})
}

func TestIDNextMatchesBigIntegers(t *testing.T) {
	limit := toBig(Max)
	rapid.Check(t, func(t *rapid.T) {
		id := anyID().Draw(t, "id")
		next, ok := id.Next()
		want := new(big.Int).Add(toBig(id), big.NewInt(1))
		if want.Cmp(limit) > 0 {
			if ok {
				t.Fatalf("%v.Next() = %v, want none: %v is the greatest ID", id, next, id)
			}
			return
		}
		if !ok || toBig(next).Cmp(want) != 0 {
			t.Fatalf("%v.Next() = %v, %v; want %v", id, next, ok, want)
		}
		if id.Compare(next) != -1 {
			t.Fatalf("%v.Next() = %v is not greater", id, next)
		}
	})
}

func TestParseIDMatchesBigIntegers(t *testing.T) {
	// Parts up to 2^65 so that about half of them overflow 64 bits.
	bigPart := rapid.Custom(func(t *rapid.T) *big.Int {
		n := new(big.Int).SetUint64(part().Draw(t, "low"))
		return n.Add(n, new(big.Int).Lsh(big.NewInt(rapid.Int64Range(0, 1).Draw(t, "high")), 64))
	})
	rapid.Check(t, func(t *rapid.T) {
		ms, seq := bigPart.Draw(t, "ms"), bigPart.Draw(t, "seq")
		zeros := rapid.StringMatching(`0{0,3}`).Draw(t, "zeros")
		text := zeros + ms.String() + "-" + zeros + seq.String()
		id, err := Parse(text)
		if !ms.IsUint64() || !seq.IsUint64() {
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want ErrSyntax: a part overflows 64 bits", text, id)
			}
			return
		}
		if err != nil {
			t.Fatalf("Parse(%q): %v", text, err)
		}
		if id.Ms != ms.Uint64() || id.Seq != seq.Uint64() {
			t.Fatalf("Parse(%q) = %v", text, id)
		}
		if want := ms.String() + "-" + seq.String(); id.String() != want {
			t.Fatalf("Parse(%q).String() = %q, want %q", text, id.String(), want)
		}
	})
}
