package projections

import (
	"testing"

	"github.com/roomcast/roomcast/domain"
)

// Stored fingerprints tell a redelivery from an id reused with other data, so
// the stored data and fingerprint of a given event must never change between
// versions: these are the values roomcast has always written for it.
func TestCanonicalDataAndFingerprintAreStable(t *testing.T) {
	env := domain.Envelope{
		Type: "chat.message.created",
		Data: []byte(` { "roomId": "r-1", "messageId": "m-1", "content": "hi\n\"x\" \u00e9",
			"author": { "name": "Ann <&>", "id": "u-1" } } `),
	}
	data, fp, err := canonicalData(env)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"author":{"id":"u-1","name":"Ann <&>"},"content":"hi\n\"x\" é","messageId":"m-1","roomId":"r-1"}`; data != want {
		t.Errorf("data = %s, want %s", data, want)
	}
	if want := "8e0d3a5bccfde1627a3ead862a77a3f7a7e21c3ac2f79296abcf4fc7dc4fc19b"; fp != want {
		t.Errorf("fingerprint = %s, want %s", fp, want)
	}
}
