package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseByteSize reads a size such as 67108864, 64MiB, 512 KiB or 1GiB
// (binary units; B, KiB, MiB or GiB, any case). It must be positive.
func ParseByteSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	unit := int64(1)
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(strings.ToLower(s), u.suffix) {
			s, unit = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.size
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/unit {
		return 0, fmt.Errorf("%q is not a positive size such as 67108864, 64MiB or 512KiB", v)
	}
	return n * unit, nil
}
