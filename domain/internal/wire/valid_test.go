package wire

import (
	"encoding/json"
	"strings"
	"testing"
)

var validSeeds = []string{
	`{}`, `[]`, `0`, `-0`, `01`, `1.`, `1e`, `1e+`, `-`, `1.5e-3`, `tru`, `true`, `nul`, `null`, `"a`, `"\u12"`, `"\u12g4"`,
	`"\x"`, `"\/"`, "\"\x01\"", "\"\xff\"", ` {"a":1} `, `{"a":1,}`, `{"a" 1}`, `{"a":1 "b":2}`, `[1,]`, `[,1]`, `{,}`,
	`{"a":[1,{"b":null}],"c":"\ud83d\ude00"}`, "\t[\n]\r", `[1] [2]`, `"`, ``, ` `, `{"a":-}`, `{"a":+1}`, `{"a":.5}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
}

func TestValidJSONIsEncodingJSONs(t *testing.T) {
	for _, s := range validSeeds {
		if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%.40q) = %v, json.Valid says %v", s, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range validSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}
