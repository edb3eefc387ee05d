package wire

// A PathStep is one step from a value into the member or element holding
// another: an object's key as written (quotes included), or an array's index.
type PathStep struct {
	Key   []byte // nil in an array
	Index int
}

// SumNumbers adds up weigh(num) over the numbers of raw, a valid JSON value,
// in the order written, until weigh refuses one (ok false). It returns the
// sum of those before, and the refused number with the path to it (nil when
// weigh took them all).
func SumNumbers(raw []byte, weigh func(num []byte) (n int, ok bool)) (sum int, refused []byte, path []PathStep) {
	w := numberWalk{raw: raw, weigh: weigh}
	w.value(SkipSpace(raw, 0))
	return w.sum, w.refused, w.refusedPath
}

type numberWalk struct {
	raw         []byte
	weigh       func(num []byte) (int, bool)
	sum         int
	path        []PathStep // to the value being visited
	refused     []byte
	refusedPath []PathStep
}

// value visits the value at raw[i] and returns the index after it; once a
// number is refused it only returns.
func (w *numberWalk) value(i int) int {
	raw := w.raw
	switch raw[i] {
	case '{', '[':
		open := raw[i]
		i = SkipSpace(raw, i+1)
		for n := 0; i < len(raw) && raw[i] != '}' && raw[i] != ']'; n++ {
			step := PathStep{Index: n}
			if open == '{' {
				end := SkipString(raw, i)
				step.Key = raw[i:end]
				i = SkipSpace(raw, SkipSpace(raw, end)+1) // ':'
			}
			w.path = append(w.path, step)
			i = SkipSpace(raw, w.value(i))
			w.path = w.path[:len(w.path)-1]
			if w.refused != nil {
				return len(raw)
			}
			if i < len(raw) && raw[i] == ',' {
				i = SkipSpace(raw, i+1)
			}
		}
		return i + 1
	case '"':
		return SkipString(raw, i)
	case 't', 'f', 'n':
		return SkipValue(raw, i)
	}
	end := SkipValue(raw, i)
	n, ok := w.weigh(raw[i:end])
	if !ok {
		w.refused, w.refusedPath = raw[i:end], append([]PathStep(nil), w.path...)
		return len(raw)
	}
	w.sum += n
	return end
}
