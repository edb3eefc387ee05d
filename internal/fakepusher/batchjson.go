package fakepusher

import "unicode/utf8"

// decodeBatchFast decodes the compact JSON that pusher-http-go (through
// encoding/json) writes for a batch call, {"batch":[{"channel":"...",
// "name":"...","data":"..."},...]}, whose strings are ASCII with
// encoding/json's escapes. It reports false for anything else (whitespace,
// other keys or key spellings, repeated keys, null, non-ASCII bytes, escaped
// surrogates...), which encoding/json then decodes and judges: what it
// accepts, encoding/json decodes to the same value (FuzzDecodeBatchFast).
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

// str reads a JSON string of ASCII characters and escapes.
func (r *batchReader) str() (string, bool) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return "", false
	}
	start := r.i + 1
	for j := start; j < len(r.b); j++ {
		switch c := r.b[j]; {
		case c == '"':
			r.i = j + 1
			return string(r.b[start:j]), true
		case c == '\\':
			return r.escaped(start, j)
		case c < 0x20 || c >= utf8.RuneSelf:
			return "", false
		}
	}
	return "", false
}

// escaped finishes a string from its first escape, at j: it finds the
// closing quote, then unescapes into a buffer of the right size.
func (r *batchReader) escaped(start, j int) (string, bool) {
	end := j
	for ; end < len(r.b) && r.b[end] != '"'; end++ {
		if r.b[end] == '\\' {
			end++
		}
	}
	if end >= len(r.b) {
		return "", false
	}
	buf := make([]byte, 0, end-start)
	buf = append(buf, r.b[start:j]...)
	for j < end {
		k := j
		for k < end && r.b[k] != '\\' && r.b[k] >= 0x20 && r.b[k] < utf8.RuneSelf {
			k++
		}
		buf = append(buf, r.b[j:k]...)
		if j = k; j == end {
			break
		}
		if r.b[j] != '\\' {
			return "", false // a control character or a non-ASCII byte
		}
		switch e := r.b[j+1]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			if j+6 > end {
				return "", false
			}
			var cp rune
			for _, h := range r.b[j+2 : j+6] {
				switch {
				case h >= '0' && h <= '9':
					cp = cp<<4 | rune(h-'0')
				case h >= 'a' && h <= 'f':
					cp = cp<<4 | rune(h-'a'+10)
				case h >= 'A' && h <= 'F':
					cp = cp<<4 | rune(h-'A'+10)
				default:
					return "", false
				}
			}
			if cp >= 0xD800 && cp <= 0xDFFF {
				return "", false // surrogates: encoding/json pairs or replaces them
			}
			buf = utf8.AppendRune(buf, cp)
			j += 6
			continue
		default:
			return "", false
		}
		j += 2
	}
	r.i = end + 1
	return string(buf), true
}
