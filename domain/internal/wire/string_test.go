package wire

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// jsonStringCases are string contents (between the quotes) that encoding/json
// accepts or refuses in every way the fast path must either match or leave
// to encoding/json.
var jsonStringCases = []string{
	``, `plain`, `hello \u003c3 \u0026 \u003e`, `\"quoted\" back\\slash \/ \b\f\n\r\t`,
	`\u00e9t\u00E9 caf\u00e9`, `\ud83d\ude00 emoji`, `\uD83D\uDE00`, `\ud800 lone high`, `\udc00 lone low`,
	`\ud83d\u0041 high then not low`, `\ud83d`, `\ud83d\`, `\ud83d\u`, `\u12`, `\u12g4`, `\x`, `\`,
	`\u0000 nul`, `\u001f \u007f`, `\u2028 \u2029`, "raw \u2028 sep", "é 😀 ü", "bad \xff utf8",
	"raw\ncontrol", `\u0041\u0042`, `tail\\`, `\\\\\"`,
}

// TestJSONStringFastPath holds AppendUnescaped to json.Unmarshal and
// AppendString to Marshal: where the fast path answers, it answers
// exactly as encoding/json does.
func TestJSONStringFastPath(t *testing.T) {
	cases := append([]string(nil), jsonStringCases...)
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{`a`, `<`, `\u003c`, `\u0026`, `\n`, `\"`, `\\`, `\/`, `é`, `\u00e9`, `\ud83d\ude00`, `😀`, `\u2028`, "\u2029", `\u0001`, ` `, `\t`, "\xff", `\ud800`}
	for range 2000 {
		var b []byte
		for range rng.IntN(8) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		cases = append(cases, string(b))
	}
	handled := 0
	for _, c := range cases {
		quoted := []byte(`"` + c + `"`)
		var want string
		werr := json.Unmarshal(quoted, &want)
		got, ok := AppendUnescaped(nil, []byte(c))
		if !ok {
			continue
		}
		handled++
		if werr != nil {
			t.Fatalf("AppendUnescaped(%q) = %q, but json.Unmarshal refuses it: %v", c, got, werr)
		}
		if string(got) != want {
			t.Fatalf("AppendUnescaped(%q) = %q, want %q", c, got, want)
		}
		enc, err := Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if re := AppendString(nil, got); !bytes.Equal(re, enc) {
			t.Fatalf("AppendString(%q) = %s, want %s", got, re, enc)
		}
	}
	if handled < len(cases)/2 {
		t.Fatalf("the fast path handled only %d of %d strings", handled, len(cases))
	}
	// The cases the fast path leaves to encoding/json.
	for _, c := range []string{`\ud800 lone high`, `\udc00 lone low`, `\ud83d\u0041 high then not low`, `\u12`, `\x`, "bad \xff utf8", "raw\ncontrol"} {
		if got, ok := AppendUnescaped(nil, []byte(c)); ok {
			t.Errorf("AppendUnescaped(%q) = %q, want it left to encoding/json", c, got)
		}
	}
	// AppendString on bytes that are not UTF-8, as encoding/json writes them.
	for _, s := range []string{"bad \xff utf8", "\xe2\x80", "ok"} {
		want, _ := Marshal(s)
		if got := AppendString(nil, []byte(s)); !bytes.Equal(got, want) || !utf8.Valid(got) {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
	}
}
