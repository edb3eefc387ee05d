package checks

import (
	"regexp"
	"strings"
)

// pinnedImage is an image reference with both a tag, for the reader, and a
// digest, which decides what is pulled: a tag can be moved to other
// content, a digest cannot.
var pinnedImage = regexp.MustCompile(`^[a-z0-9][a-z0-9._/:-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}@sha256:[0-9a-f]{64}$`)

// checkPinned reports ref unless it is pinned by digest with its tag.
func checkPinned(where, ref string, fs *findings) {
	switch {
	case pinnedImage.MatchString(ref):
	case strings.Contains(ref, "@sha256:"):
		fs.add("%s: image %q: the digest needs its tag beside it (name:tag@sha256:<64 hex digits>)", where, ref)
	default:
		fs.add("%s: image %q is not pinned by digest: a tag can be moved to other content (name:tag@sha256:...)", where, ref)
	}
}
