package streamid

import "testing"

// FuzzParse checks that Parse never panics, that what it accepts
// round-trips through String, and that Compare is a consistent order.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"1-0", "0-0", "1694012345678-0", "18446744073709551615-18446744073709551615", "1-", "-1", "*", "1-*", " 1-0", "00-01"} {
		f.Add(s, "1-1")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ida, errA := Parse(a)
		idb, errB := Parse(b)
		if errA != nil || errB != nil {
			return
		}
		again, err := Parse(ida.String())
		if err != nil || again != ida {
			t.Fatalf("%q parsed to %v, which does not round-trip: %v %v", a, ida, again, err)
		}
		if ida.Compare(idb) != -idb.Compare(ida) {
			t.Fatalf("Compare is not antisymmetric for %v and %v", ida, idb)
		}
		if (ida.Compare(idb) == 0) != (ida == idb) {
			t.Fatalf("Compare 0 but not equal: %v %v", ida, idb)
		}
	})
}
