package wire

import (
	"bytes"
	"encoding/json"
	"sync"
)

// Member is one member of a JSON object: its key unescaped, its value as its
// bytes (a sub-slice of the object, not a copy).
type Member struct {
	Key []byte
	Val json.RawMessage
	// Of an object or array: how deeply it nests (1 when it holds none),
	// and whether it holds a number (domain checks numbers only then).
	Depth   int32
	Numbers bool
}

// Members are an object's members in the order written.
type Members []Member

// Get returns the value of key, nil when missing. The last of duplicate keys
// counts, as in JavaScript, Postgres jsonb and encoding/json's maps. A linear
// scan: events have about ten members, and a map per object (and a string
// per key) was 7% of what roomcast allocated.
func (ms Members) Get(key string) json.RawMessage {
	if m := ms.Member(key); m != nil {
		return m.Val
	}
	return nil
}

// Member returns the member of key (the last of duplicates), nil when missing.
func (ms Members) Member(key string) *Member {
	for i := len(ms) - 1; i >= 0; i-- {
		if string(ms[i].Key) == key {
			return &ms[i]
		}
	}
	return nil
}

// membersArenas holds the member lists of one Decode at a time: the
// envelope's and its objects' members go one after another into one slice,
// which goes back to the pool when Decode returns (a list per object was a
// tenth of what roomcast allocated under a backlog).
var membersArenas = sync.Pool{New: func() any { a := make(Members, 0, 32); return &a }}

// GetArena takes an arena for SplitObject from the pool.
func GetArena() *Members { return membersArenas.Get().(*Members) }

// PutArena returns an arena to the pool, forgetting the bytes its members
// point into.
func PutArena(a *Members) {
	clear(*a)
	*a = (*a)[:0]
	membersArenas.Put(a)
}

// SplitObject returns the members of raw, a JSON object already known to be
// valid JSON (json.Valid), as json.Unmarshal into a map[string]json.RawMessage
// would read them: keys unescaped, values as their bytes. It walks raw once
// and does not validate again: a third of Decode's time went into
// encoding/json checking and decoding the same bytes twice (the envelope,
// then its data). ok is false when raw is not an object. The members are
// appended to arena; the list returned is theirs.
func SplitObject(raw []byte, arena *Members) (Members, bool) {
	i := SkipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, false
	}
	start := len(*arena)
	members := func() Members { return (*arena)[start:len(*arena):len(*arena)] }
	i = SkipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return members(), true
	}
	for i < len(raw) {
		// "key"
		end := SkipString(raw, i)
		key := raw[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if err := json.Unmarshal(raw[i:end], &k); err != nil {
				return nil, false
			}
			key = []byte(k)
		}
		i = SkipSpace(raw, end)
		i = SkipSpace(raw, i+1) // ':'
		vend, depth, numbers := skipNoting(raw, i)
		*arena = append(*arena, Member{Key: key, Val: raw[i:vend:vend], Depth: depth, Numbers: numbers})
		i = SkipSpace(raw, vend)
		if i >= len(raw) || raw[i] == '}' {
			return members(), true
		}
		i = SkipSpace(raw, i+1) // ','
	}
	return members(), true
}

// SkipSpace returns the index of the first byte at or after raw[i] that is
// not JSON whitespace.
func SkipSpace(raw []byte, i int) int {
	for i < len(raw) {
		switch raw[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// SkipString returns the index just after the string starting at raw[i] ('"').
func SkipString(raw []byte, i int) int {
	for i++; i < len(raw); i++ {
		switch raw[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(raw)
}

// skipNoting is SkipValue noting, of an object or array, how deeply it nests
// and whether it holds a number. Decode walks data's bytes here anyway (to
// find where it ends); noting costs a comparison per byte outside strings,
// where a pass of its own would walk every string of data again.
func skipNoting(raw []byte, i int) (end int, depth int32, numbers bool) {
	if i >= len(raw) || (raw[i] != '{' && raw[i] != '[') {
		return SkipValue(raw, i), 0, false
	}
	var d int32
	for i < len(raw) {
		switch raw[i] {
		case '"':
			i = SkipString(raw, i)
			continue
		case '{', '[':
			if d++; d > depth {
				depth = d
			}
		case '}', ']':
			if d--; d == 0 {
				return i + 1, depth, numbers
			}
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			numbers = true
		}
		i++
	}
	return i, depth, numbers
}

// SkipValue returns the index just after the value starting at raw[i].
func SkipValue(raw []byte, i int) int {
	if i >= len(raw) {
		return i
	}
	switch raw[i] {
	case '"':
		return SkipString(raw, i)
	case '{', '[':
		depth := 0
		for i < len(raw) {
			switch raw[i] {
			case '"':
				i = SkipString(raw, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(raw) {
			switch raw[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return i
			}
			i++
		}
		return i
	}
}

// Kind names the JSON type of raw, a valid JSON value.
func Kind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}
