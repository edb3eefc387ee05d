package fakepusher

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// pusherBatch encodes a batch as pusher-http-go does (encoding/json, HTML
// escaping and all).
func pusherBatch(t testing.TB, items ...map[string]string) []byte {
	t.Helper()
	type event struct {
		Channel  string  `json:"channel"`
		Name     string  `json:"name"`
		Data     string  `json:"data"`
		SocketID *string `json:"socket_id,omitempty"`
		Info     *string `json:"info,omitempty"`
	}
	var batch []event
	for _, it := range items {
		e := event{Channel: it["channel"], Name: it["name"], Data: it["data"]}
		if v, ok := it["socket_id"]; ok {
			e.SocketID = &v
		}
		if v, ok := it["info"]; ok {
			e.Info = &v
		}
		batch = append(batch, e)
	}
	b, err := json.Marshal(struct {
		Batch []event `json:"batch"`
	}{batch})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var batchSeeds = []string{
	`{"batch":[]}`,
	`{"batch":[{}]}`,
	`{"batch":[{"channel":"a","name":"b","data":"c"},{"channel":"d","name":"e","data":"f","socket_id":"1.2","info":"user_count"}]}`,
	`{"batch":[{"channel":"a","channel":"b"}]}`,
	`{"batch":[{"Channel":"a"}]}`,
	`{"batch":[{"channel":null}]}`,
	`{"batch": []}`,
	`{"batch":[]} `,
	`{"batch":[{"data":"\ud83d\ude00 \u00e9 \"q\" \\ \/ \b\f\n\r\t"}]}`,
	`{"batch":[{"data":"\ud800"}]}`,
	`{"batch":[{"data":"é"}]}`,
	`{"batch":[{"data":"\u12"}]}`,
	`{"batch":[{"data":"a` + "\x01" + `"}]}`,
	`{"batch":[{"extra":"x"}]}`,
	`{"batch":[{"channel":"a"}],"other":1}`,
	`{"batch":[{"channel":"a"},]}`,
}

// What the fast path accepts, encoding/json decodes to the same value.
func FuzzDecodeBatchFast(f *testing.F) {
	for _, s := range batchSeeds {
		f.Add([]byte(s))
	}
	f.Add(pusherBatch(f, map[string]string{"channel": "private-room-r1", "name": "new-message",
		"data": `{"id":"m1","content":"<b>hi</b> & \"bye\"","seq":1}`}))
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := decodeBatchFast(body)
		if !ok {
			return
		}
		var want batchBody
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", body, err)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("%q: fast path %s, encoding/json %s", body, show(fast), show(want))
		}
	})
}

func show(b batchBody) string {
	out, _ := json.Marshal(b)
	return string(out)
}

// What pusher-http-go sends takes the fast path; the rest goes to encoding/json.
func TestDecodeBatchFast(t *testing.T) {
	body := pusherBatch(t,
		map[string]string{"channel": "private-room-r1", "name": "new-message", "data": `{"id":"m1","content":"<b>hi</b> & \"bye\"\n","seq":1}`},
		map[string]string{"channel": "private-user-u1", "name": "notification", "data": `{}`, "socket_id": "123.456"},
		map[string]string{"channel": "private-room-r2", "name": "new-message", "data": `{"content":"é 😀 \u2028"}`},
	)
	got, ok := decodeBatchFast(body)
	if !ok {
		t.Fatalf("pusher-http-go's encoding %s did not take the fast path", body)
	}
	var want batchBody
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path %s, encoding/json %s", show(got), show(want))
	}
	if d := *(*got.Batch)[0].Data; !strings.Contains(d, `"<b>hi</b> & \"bye\"\n"`) {
		t.Errorf("data %q not unescaped", d)
	}
	for _, s := range []string{
		`{"batch":[{"channel":"a","channel":"b"}]}`, // repeated key: encoding/json keeps the last
		`{"batch":[{"Channel":"a"}]}`,               // encoding/json matches keys without case
		`{"batch":[{"data":"\ud800"}]}`,             // a lone surrogate: encoding/json replaces it
		"{\"batch\":[{\"data\":\"\xff\"}]}",         // not UTF-8
		`{"batch":[{"channel":null}]}`,
		`{"batch": []}`,
	} {
		if _, ok := decodeBatchFast([]byte(s)); ok {
			t.Errorf("%s took the fast path", s)
		}
	}
}
