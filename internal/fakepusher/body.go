package fakepusher

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits enforced by the fake, matching Pusher Channels' HTTP API.
const (
	maxEventNameLength   = 200   // characters
	maxChannelNameLength = 164   // characters
	maxChannelsPerEvent  = 100   // channels per event
	maxDataBytes         = 10240 // bytes of data per event
	maxBatchEvents       = 10    // events per batch call
)

var socketIDRE = regexp.MustCompile(`^\d+\.\d+$`)

// The bodies of POST /events and POST /batch_events, as Pusher reads them
// (a missing field is nil).
type triggerBody struct {
	Name     *string         `json:"name"`
	Data     *string         `json:"data"`
	Channels json.RawMessage `json:"channels"`
	Channel  *string         `json:"channel"`
	SocketID *string         `json:"socket_id"`
	Info     *string         `json:"info"`
}

type batchItem struct {
	Channel  *string `json:"channel"`
	Name     *string `json:"name"`
	Data     *string `json:"data"`
	SocketID *string `json:"socket_id"`
	Info     *string `json:"info"`
}

type batchBody struct {
	Batch *[]batchItem `json:"batch"`
}

func decodeJSON(body []byte, v any) (outcome, bool) {
	if len(body) == 0 {
		return fail(http.StatusBadRequest, "Request body is empty; expected a JSON object"), false
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fail(http.StatusBadRequest, "Invalid JSON body: %v", err), false
	}
	return outcome{}, true
}

// parseTrigger validates a POST /events body and returns one Event per channel.
func parseTrigger(body []byte, received time.Time) ([]Event, outcome, bool) {
	var tb triggerBody
	if o, ok := decodeJSON(body, &tb); !ok {
		return nil, o, false
	}
	if tb.Name == nil || *tb.Name == "" {
		return nil, fail(http.StatusBadRequest, "Missing required parameter: name"), false
	}
	if tb.Data == nil {
		return nil, fail(http.StatusBadRequest, "Missing required parameter: data (a string)"), false
	}
	hasChannels := len(tb.Channels) > 0 && string(tb.Channels) != "null"
	var channels []string
	switch {
	case hasChannels && tb.Channel != nil:
		return nil, fail(http.StatusBadRequest, "Specify either channels or channel, not both"), false
	case hasChannels:
		if err := json.Unmarshal(tb.Channels, &channels); err != nil {
			return nil, fail(http.StatusBadRequest, "channels must be an array of strings"), false
		}
	case tb.Channel != nil:
		channels = []string{*tb.Channel}
	default:
		return nil, fail(http.StatusBadRequest, "Missing required parameter: channels (or channel)"), false
	}
	if o, ok := checkEvent(*tb.Name, channels, *tb.Data, tb.SocketID, ""); !ok {
		return nil, o, false
	}
	events := make([]Event, 0, len(channels))
	for _, ch := range channels {
		events = append(events, Event{Channel: ch, Name: *tb.Name, Data: *tb.Data, SocketID: deref(tb.SocketID), ReceivedAt: received})
	}
	return events, outcome{}, true
}

// parseBatch validates a POST /batch_events body and returns its events; the
// outcome's body is the JSON to answer with.
func parseBatch(body []byte, received time.Time) ([]Event, outcome, bool) {
	var bb batchBody
	if o, ok := decodeJSON(body, &bb); !ok {
		return nil, o, false
	}
	if bb.Batch == nil {
		return nil, fail(http.StatusBadRequest, "Missing required parameter: batch (an array of events)"), false
	}
	items := *bb.Batch
	if len(items) == 0 {
		return nil, fail(http.StatusBadRequest, "Batch is empty; it must contain at least 1 event"), false
	}
	if len(items) > maxBatchEvents {
		return nil, fail(http.StatusBadRequest, "Batch too large (%d events, at most %d allowed)", len(items), maxBatchEvents), false
	}
	events := make([]Event, 0, len(items))
	anyInfo := false
	for i, it := range items {
		switch {
		case it.Channel == nil:
			return nil, fail(http.StatusBadRequest, "Batch event #%d: missing required parameter: channel", i), false
		case it.Name == nil || *it.Name == "":
			return nil, fail(http.StatusBadRequest, "Batch event #%d: missing required parameter: name", i), false
		case it.Data == nil:
			return nil, fail(http.StatusBadRequest, "Batch event #%d: missing required parameter: data (a string)", i), false
		}
		if o, ok := checkEvent(*it.Name, []string{*it.Channel}, *it.Data, it.SocketID, fmt.Sprintf("Batch event #%d: ", i)); !ok {
			return nil, o, false
		}
		anyInfo = anyInfo || it.Info != nil
		events = append(events, Event{Channel: *it.Channel, Name: *it.Name, Data: *it.Data, SocketID: deref(it.SocketID), ReceivedAt: received})
	}
	// Pusher answers {} unless info was requested, then one (here empty) object per event.
	var o outcome
	if anyInfo {
		o.body = "{\"batch\":[" + strings.TrimSuffix(strings.Repeat("{},", len(items)), ",") + "]}"
	}
	return events, o, true
}

// checkEvent applies Pusher's per-event limits.
func checkEvent(name string, channels []string, data string, socketID *string, prefix string) (outcome, bool) {
	if n := utf8.RuneCountInString(name); n > maxEventNameLength {
		return fail(http.StatusBadRequest, "%sEvent name too long (%d characters, at most %d allowed)", prefix, n, maxEventNameLength), false
	}
	if len(channels) == 0 {
		return fail(http.StatusBadRequest, "%sNo channels given (at least 1 required)", prefix), false
	}
	if len(channels) > maxChannelsPerEvent {
		return fail(http.StatusBadRequest, "%sToo many channels (%d, at most %d allowed)", prefix, len(channels), maxChannelsPerEvent), false
	}
	for _, ch := range channels {
		if !validChannelName(ch) {
			return fail(http.StatusBadRequest, "%sInvalid channel name %q (allowed characters: a-z A-Z 0-9 _ - = @ , . ;)", prefix, ch), false
		}
		if len(ch) > maxChannelNameLength {
			return fail(http.StatusBadRequest, "%sChannel name too long (%d characters, at most %d allowed)", prefix, len(ch), maxChannelNameLength), false
		}
	}
	if len(data) > maxDataBytes {
		return fail(http.StatusRequestEntityTooLarge, "%sEvent data too large (%d bytes, at most %d allowed)", prefix, len(data), maxDataBytes), false
	}
	if socketID != nil && !socketIDRE.MatchString(*socketID) {
		return fail(http.StatusBadRequest, "%sInvalid socket_id %q", prefix, *socketID), false
	}
	return outcome{}, true
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// validChannelName reports whether ch matches ^[-a-zA-Z0-9_=@,.;]+$, Pusher's
// channel name characters, without the regexp engine: the fake shares the
// machine with the worker benchmarks measure (TestValidChannelName holds it
// to the expression).
func validChannelName(ch string) bool {
	if ch == "" {
		return false
	}
	for i := 0; i < len(ch); i++ {
		switch c := ch[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '=', c == '@', c == ',', c == '.', c == ';':
		default:
			return false
		}
	}
	return true
}
