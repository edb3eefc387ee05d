package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/roomcast/roomcast/domain"
)

// canonicalReference is how stored data was canonicalised before
// CanonicalJSON: decode into an any with UseNumber, marshal without HTML
// escaping. Fingerprints of stored events depend on this exact form.
func canonicalReference(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("more than one value")
	}
	return domain.MarshalPayload(v)
}

var canonicalSeeds = []string{
	`{}`, `[]`, `{"a":1}`, ` { "b" : 2 , "a" : [1, 2.50, -0, 1e10, 1E-3] } `,
	`{"a":1,"a":2}`, `{"b":1,"a":{"d":null,"c":true,"c":false}}`,
	`{"content":"hello <b>&amp;</b>"}`, `{"content":"line\nbreak \"quoted\" back\\slash tab\t"}`,
	`{"s":"\u00e9t\u00E9 caf\u00e9 \ud83d\ude00 \/ \b\f\r"}`, `{"s":"é 😀 ü"}`,
	`{"s":"\u2028 and \u2029"}`, "{\"s\":\"raw \u2028 sep\"}", `{"s":"\ud800 lone"}`,
	"{\"s\":\"bad \xff utf8\"}", "{\"bad\xffkey\":1}", `{"k\u00e9y":1,"kéy":2}`, `{"\"":1,"\\":2,"a":3}`,
	`{"x":"\u0000\u001f\u007f"}`, `{"n":[[],{},[{}],{"a":[]}]}`, `"top"`, `12`, `null`,
	`{"messageId":"m-1","roomId":"r-1","content":"hi","author":{"id":"u-1","name":"Ann","avatar":"https://x/y.png?a=1&b=2"}}`,
}

func TestCanonicalJSONMatchesDecodeAndMarshal(t *testing.T) {
	for _, s := range canonicalSeeds {
		want, werr := canonicalReference([]byte(s))
		got, gerr := domain.CanonicalJSON([]byte(s))
		if werr != nil {
			t.Fatalf("seed %q is not valid JSON: %v", s, werr)
		}
		if gerr != nil || !bytes.Equal(got, want) {
			t.Errorf("domain.CanonicalJSON(%q) = %q, %v; want %q", s, got, gerr, want)
		}
	}
}

func TestCanonicalJSONRejectsInvalid(t *testing.T) {
	for _, s := range []string{``, `{`, `{"a"}`, `{"a":}`, `[1,]`, `{"a":1 "b":2}`, `{} {}`, `"open`, `{"a":1,}`,
		`{"a":tru}`, `{"a":nul}`, `[01]`, `[1.]`, `[.5]`, `[1e]`, `[-]`, `[+1]`, `[0x1]`, `[NaN]`, `{"a":1.5e+}`} {
		if got, err := domain.CanonicalJSON([]byte(s)); err == nil {
			t.Errorf("domain.CanonicalJSON(%q) = %q, want an error", s, got)
		}
	}
}

// FuzzCanonicalJSON holds CanonicalJSON to the decode-and-marshal it
// replaced, byte for byte, on every valid JSON value.
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			// Callers pass data Decode validated; anything else may be
			// refused but must never pass for valid JSON it is not.
			if got, err := domain.CanonicalJSON(raw); err == nil && !json.Valid(got) {
				t.Fatalf("domain.CanonicalJSON(%q) = %q: invalid JSON accepted", raw, got)
			}
			return
		}
		want, werr := canonicalReference(raw)
		got, gerr := domain.CanonicalJSON(raw)
		if werr != nil {
			if gerr == nil {
				t.Fatalf("domain.CanonicalJSON(%q) = %q, but decoding fails: %v", raw, got, werr)
			}
			return
		}
		if gerr != nil || !bytes.Equal(got, want) {
			t.Fatalf("domain.CanonicalJSON(%q) = %q, %v; want %q", raw, got, gerr, want)
		}
	})
}

func BenchmarkCanonicalJSON(b *testing.B) {
	raw := []byte(`{"messageId":"0190a3c4-aaaa-bbbb-cccc-000000000001","roomId":"room-17","content":"Hello everyone, this is a message of a typical length for a chat.","author":{"id":"user-42","name":"Ann Example","avatar":"https://cdn.example.com/a/42.png"},"createdAt":"2026-11-27T12:00:00Z"}`)
	b.Run("CanonicalJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := domain.CanonicalJSON(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	// As Go producers write it: json.Marshal escapes <, > and & as \u003c...
	escaped := bytes.Replace(raw, []byte("Hello everyone,"), []byte(`Hello \u003c3 \u0026 everyone,`), 1)
	b.Run("CanonicalJSON/HTML-escaped", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := domain.CanonicalJSON(escaped); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode+marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := canonicalReference(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
