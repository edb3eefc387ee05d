package fakepusher

import (
	"unicode/utf8"

	"github.com/roomcast/roomcast/internal/jsonstr"
)

// decodeBatchFast decodes the compact JSON that pusher-http-go (through
// encoding/json) writes for a batch call, {"batch":[{"channel":"...",
// "name":"...","data":"..."},...]}. It reports false for anything else
// (whitespace, other keys or key spellings, repeated keys, null, strings
// that jsonstr leaves to encoding/json...), which encoding/json then decodes
// and judges: what it accepts, encoding/json decodes to the same value
// (FuzzDecodeBatchFast).
//
// encoding/json's full validation pass and reflection were a fifth of the
// benchmark process's CPU in BenchmarkIngest (~2.5 µs per event), where the
// fake shares the machine with the worker it measures.
func decodeBatchFast(body []byte) (batchBody, bool) {
	r := batchReader{b: body}
	if !r.lit(`{"batch":[`) {
		return batchBody{}, false
	}
	items := make([]batchItem, 0, 10)
	if !r.lit("]") {
		for {
			it, ok := r.item()
			if !ok {
				return batchBody{}, false
			}
			items = append(items, it)
			if r.lit(",") {
				continue
			}
			if r.lit("]") {
				break
			}
			return batchBody{}, false
		}
	}
	if !r.lit("}") || r.i != len(r.b) {
		return batchBody{}, false
	}
	return batchBody{Batch: &items}, true
}

type batchReader struct {
	b []byte
	i int
}

func (r *batchReader) lit(s string) bool {
	if len(r.b)-r.i >= len(s) && string(r.b[r.i:r.i+len(s)]) == s {
		r.i += len(s)
		return true
	}
	return false
}

// item reads one {"key":"value",...} of the batch.
func (r *batchReader) item() (batchItem, bool) {
	var it batchItem
	if !r.lit("{") {
		return it, false
	}
	if r.lit("}") {
		return it, true
	}
	for {
		key, ok := r.str()
		if !ok || !r.lit(":") {
			return it, false
		}
		val, ok := r.str()
		if !ok {
			return it, false
		}
		var field **string
		switch key {
		case "channel":
			field = &it.Channel
		case "name":
			field = &it.Name
		case "data":
			field = &it.Data
		case "socket_id":
			field = &it.SocketID
		case "info":
			field = &it.Info
		default:
			return it, false
		}
		if *field != nil {
			return it, false // repeated: encoding/json keeps the last
		}
		*field = &val
		if r.lit(",") {
			continue
		}
		if r.lit("}") {
			return it, true
		}
		return it, false
	}
}

// str reads a JSON string, decoded as encoding/json decodes it
// (jsonstr.AppendUnescaped, which leaves the rare cases to encoding/json).
func (r *batchReader) str() (string, bool) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return "", false
	}
	start, plain := r.i+1, true
	end := start
	for ; end < len(r.b) && r.b[end] != '"'; end++ {
		switch c := r.b[end]; {
		case c == '\\':
			plain = false
			end++ // the escaped byte, a quote maybe
		case c < 0x20 || c >= utf8.RuneSelf:
			plain = false
		}
	}
	if end >= len(r.b) {
		return "", false
	}
	r.i = end + 1
	if plain {
		return string(r.b[start:end]), true
	}
	dec, ok := jsonstr.AppendUnescaped(make([]byte, 0, end-start), r.b[start:end])
	if !ok {
		return "", false
	}
	return string(dec), true
}
