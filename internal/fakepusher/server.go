// Package fakepusher is an in-process fake of Pusher Channels' HTTP publishing
// API (POST /apps/{app_id}/events and /apps/{app_id}/batch_events).
//
// It authenticates and validates every request the way Pusher does (signature,
// timestamp window, body MD5, payload limits) so that the real pusher-http-go
// client can be tested against it, records what it accepts, and can inject
// latency, failures, outages and per-event rejections.
package fakepusher

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	maxTimestampSkew     = 600   // seconds between auth_timestamp and now
	maxBodyBytes         = 1 << 20
	statusClientClosed   = 499 // recorded when the caller gave up during injected latency
	authVersion          = "1.0"
	eventsEndpoint       = "events"
	batchEventsEndpoint  = "batch_events"
	contentTypePlainText = "text/plain; charset=utf-8"
)

var (
	socketIDRE = regexp.MustCompile(`^\d+\.\d+$`)
	errClosed  = errors.New("fakepusher: server closed")
)

// Config configures a fake Pusher server; AppID, Key and Secret are the credentials requests must be signed with.
type Config struct {
	AppID, Key, Secret string
	Addr               string       // listen address; "" means "127.0.0.1:0"
	Logger             *slog.Logger // optional
	OnEvent            func(Event)  // optional; called for every accepted event, in acceptance order
}

// Event is one accepted event on one channel (a call to N channels yields N Events).
type Event struct {
	Channel    string
	Name       string
	Data       string // the data string exactly as received (after JSON decoding of the body)
	SocketID   string
	Call       int64 // sequence number of the HTTP call that carried it (1, 2, 3, ...)
	ReceivedAt time.Time
}

// Call is one HTTP call answered by the server, with the status it was answered with; Events and Channels count the events recorded from it and their distinct channels (0 unless accepted).
type Call struct {
	Seq      int64
	Path     string
	Status   int
	Events   int
	Channels int
	At       time.Time
}

// Server is a running fake Pusher HTTP API; all methods are safe for concurrent use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	ln   net.Listener
	srv  *http.Server
	host string

	commitMu sync.Mutex // serialises commits and OnEvent callbacks so callbacks see acceptance order

	mu       sync.Mutex
	seq      int64
	events   eventLog
	calls    []Call
	changed  chan struct{} // closed and replaced whenever events change or the server closes
	closed   bool
	latency  time.Duration
	failN    int
	failCode int
	down     bool
	reject   func(Event) int
}

// Start listens on cfg.Addr (default "127.0.0.1:0") and serves the fake API in the background until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.AppID == "" || cfg.Key == "" || cfg.Secret == "" {
		return nil, errors.New("fakepusher: AppID, Key and Secret are required")
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fakepusher: listen %s: %w", addr, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		log:     logger,
		ln:      ln,
		host:    hostFor(ln.Addr()),
		changed: make(chan struct{}),
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.handle),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("fakepusher: serve stopped", "err", err)
		}
	}()
	s.log.Info("fakepusher: listening", "url", s.URL(), "app_id", cfg.AppID)
	return s, nil
}

// hostFor turns a listener address into a dialable "host:port", replacing an unspecified IP with 127.0.0.1.
func hostFor(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}

// Host returns the "host:port" to put in pusher.Client.Host (with Secure=false).
func (s *Server) Host() string { return s.host }

// URL returns the server's base URL, "http://" + Host().
func (s *Server) URL() string { return "http://" + s.host }

// Close stops the server at once, dropping in-flight calls, and makes pending WaitForEvents return an error.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.notifyLocked()
	}
	s.mu.Unlock()
	return s.srv.Close()
}

// Events returns a copy of all recorded events in acceptance order.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events.all()
}

// EventsOn returns a copy of the recorded events on channel, in acceptance order.
func (s *Server) EventsOn(channel string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
	for _, chunk := range s.events.chunks {
		for _, e := range chunk {
			if e.Channel == channel {
				out = append(out, e)
			}
		}
	}
	return out
}

// Calls returns a copy of every answered HTTP call (accepted or rejected) in the order they were answered.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Reset forgets recorded events and calls and restarts call numbering at 1; injected faults and latency are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = eventLog{}
	s.calls = nil
	s.seq = 0
	s.notifyLocked()
}

// WaitForEvents blocks until at least n events are recorded, returning ctx's error if it ends first or an error if the server is closed.
func (s *Server) WaitForEvents(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have, closed, ch := s.events.n, s.closed, s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		if closed {
			return fmt.Errorf("%w with %d of %d events recorded", errClosed, have, n)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fakepusher: %d of %d events recorded: %w", have, n, ctx.Err())
		}
	}
}

// SetLatency delays the answer to every subsequent call by d (0 disables).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// FailNext answers the next n authenticated calls with status and records none of their events.
func (s *Server) FailNext(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN = max(n, 0)
	s.failCode = status
}

// SetDown makes authenticated calls get 503 "service unavailable" and record nothing while down is true.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// RejectWhen installs a per-event rule (nil removes it): if f returns a non-zero status for any event of a valid call, the whole call is answered with it and nothing of it is recorded.
//
// f receives each event of the call (one per channel) with Call still 0; it must not call methods of s that block on a call in progress.
func (s *Server) RejectWhen(f func(Event) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject = f
}

// notifyLocked wakes every WaitForEvents; s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// outcome is the decision taken for one call before latency is applied.
type outcome struct {
	status int
	body   string // plain text for errors, JSON for 200
	reason string // for the log
	events []Event
}

func fail(status int, format string, args ...any) outcome {
	msg := fmt.Sprintf(format, args...)
	return outcome{status: status, body: msg + "\n", reason: msg}
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	o := s.decide(r, received)

	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.commit(r.URL.Path, outcome{status: statusClientClosed, reason: "caller gave up during injected latency"})
			return
		}
	}
	if r.Context().Err() != nil {
		s.commit(r.URL.Path, outcome{status: statusClientClosed, reason: "caller gave up"})
		return
	}

	s.commit(r.URL.Path, o)
	if o.status == http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", contentTypePlainText)
		w.Header().Set("X-Content-Type-Options", "nosniff")
	}
	w.WriteHeader(o.status)
	_, _ = io.WriteString(w, o.body)
}

// commit records the call (and its events if accepted), then runs OnEvent for each accepted event in order.
func (s *Server) commit(path string, o outcome) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()

	s.mu.Lock()
	s.seq++
	c := Call{Seq: s.seq, Path: path, Status: o.status, At: time.Now()}
	var accepted []Event
	if o.status == http.StatusOK && len(o.events) > 0 {
		channels := make(map[string]struct{}, len(o.events))
		accepted = make([]Event, len(o.events))
		for i, e := range o.events {
			e.Call = c.Seq
			accepted[i] = e
			channels[e.Channel] = struct{}{}
		}
		c.Events, c.Channels = len(accepted), len(channels)
		s.events.add(accepted)
		s.notifyLocked()
	}
	s.calls = append(s.calls, c)
	s.mu.Unlock()

	if o.status == http.StatusOK {
		s.log.Debug("fakepusher: call accepted", "seq", c.Seq, "path", path, "events", c.Events, "channels", c.Channels)
	} else {
		s.log.Info("fakepusher: call rejected", "seq", c.Seq, "path", path, "status", o.status, "reason", o.reason)
	}
	if s.cfg.OnEvent != nil {
		for _, e := range accepted {
			s.cfg.OnEvent(e)
		}
	}
}

// decide runs the checks in Pusher's order: route, auth, injected faults, JSON, limits, RejectWhen.
func (s *Server) decide(r *http.Request, received time.Time) outcome {
	// 1. Route and app id.
	endpoint, ok := s.route(r)
	if !ok {
		return fail(http.StatusNotFound, "404 NOT FOUND")
	}

	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fail(http.StatusRequestEntityTooLarge, "Request body too large (limit %d bytes)", maxBodyBytes)
		}
		return fail(http.StatusBadRequest, "Could not read request body: %v", err)
	}

	// 2. Authentication.
	if o, ok := s.authenticate(r, body, received); !ok {
		return o
	}

	// 3. Injected faults.
	s.mu.Lock()
	down := s.down
	failing := !down && s.failN > 0
	failCode := s.failCode
	if failing {
		s.failN--
	}
	reject := s.reject
	s.mu.Unlock()
	if down {
		return fail(http.StatusServiceUnavailable, "service unavailable")
	}
	if failing {
		return fail(validStatus(failCode), "injected failure (%d)", failCode)
	}

	// 4 and 5. Body and limits.
	var events []Event
	var o outcome
	if endpoint == eventsEndpoint {
		events, o, ok = parseTrigger(body, received)
	} else {
		events, o, ok = parseBatch(body, received)
	}
	if !ok {
		return o
	}

	// 6. Per-event rule.
	if reject != nil {
		for _, e := range events {
			if st := reject(e); st != 0 {
				return fail(validStatus(st), "rejected by rule (%d) for event %q on channel %q", st, e.Name, e.Channel)
			}
		}
	}

	resp := "{}"
	if endpoint == batchEventsEndpoint && o.body != "" {
		resp = o.body
	}
	return outcome{status: http.StatusOK, body: resp, events: events}
}

// validStatus maps a status net/http cannot write to 500.
func validStatus(st int) int {
	if st < 100 || st > 999 {
		return http.StatusInternalServerError
	}
	return st
}

// route reports which publishing endpoint r addresses, if it is a POST to this app.
func (s *Server) route(r *http.Request) (string, bool) {
	if r.Method != http.MethodPost {
		return "", false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/apps/")
	if !ok {
		return "", false
	}
	appID, endpoint, ok := strings.Cut(rest, "/")
	if !ok || appID != s.cfg.AppID {
		return "", false
	}
	if endpoint != eventsEndpoint && endpoint != batchEventsEndpoint {
		return "", false
	}
	return endpoint, true
}

// authenticate checks auth_key, auth_timestamp, auth_version, body_md5 and auth_signature.
func (s *Server) authenticate(r *http.Request, body []byte, now time.Time) (outcome, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fail(http.StatusUnauthorized, "Malformed query string: %v", err), false
	}
	key := q.Get("auth_key")
	if key == "" {
		return fail(http.StatusUnauthorized, "Missing auth_key"), false
	}
	if key != s.cfg.Key {
		return fail(http.StatusUnauthorized, "Unknown auth_key"), false
	}
	tsRaw := q.Get("auth_timestamp")
	ts, err := strconv.ParseInt(tsRaw, 10, 64)
	if err != nil {
		return fail(http.StatusUnauthorized, "Missing or invalid auth_timestamp %q", tsRaw), false
	}
	if skew := now.Unix() - ts; skew > maxTimestampSkew || skew < -maxTimestampSkew {
		return fail(http.StatusUnauthorized, "Timestamp expired: Given timestamp (%d) not within %ds of server time (%d)", ts, maxTimestampSkew, now.Unix()), false
	}
	if v := q.Get("auth_version"); v != authVersion {
		return fail(http.StatusUnauthorized, "Invalid auth_version %q (expected %s)", v, authVersion), false
	}
	sum := md5.Sum(body)
	wantMD5 := hex.EncodeToString(sum[:])
	gotMD5, hasMD5 := q["body_md5"]
	if len(body) > 0 && !hasMD5 {
		return fail(http.StatusUnauthorized, "Missing body_md5"), false
	}
	if hasMD5 && (len(gotMD5) != 1 || gotMD5[0] != wantMD5) {
		return fail(http.StatusUnauthorized, "Invalid body_md5: the body's MD5 is %s", wantMD5), false
	}
	sig := q.Get("auth_signature")
	if sig == "" {
		return fail(http.StatusUnauthorized, "Missing auth_signature"), false
	}
	toSign := stringToSign(r.Method, r.URL.Path, q)
	mac := hmac.New(sha256.New, []byte(s.cfg.Secret))
	mac.Write([]byte(toSign))
	want := hex.EncodeToString(mac.Sum(nil))
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) != 1 {
		return fail(http.StatusUnauthorized, "Invalid signature: you should have sent HmacSHA256Hex(%q, your_secret)", toSign), false
	}
	return outcome{}, true
}

// stringToSign returns Pusher's string to sign for a request: method, path and the query parameters except auth_signature (keys lowercased, sorted by key, k=v joined by &, values unescaped), separated by newlines.
//
// It is byte-identical to what pusher-http-go v5 signs (url.Values.Encode followed by url.QueryUnescape).
func stringToSign(method, path string, query url.Values) string {
	type kv struct{ k, v string }
	var pairs []kv
	for k, vs := range query {
		lk := strings.ToLower(k)
		if lk == "auth_signature" {
			continue
		}
		for _, v := range vs {
			pairs = append(pairs, kv{lk, v})
		}
	}
	// Stable on key only, so repeated keys keep their order like url.Values.Encode.
	sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].k < pairs[j].k })
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(path)
	b.WriteByte('\n')
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

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

// eventLog keeps the accepted events in chunks of eventChunk, so that
// recording some never copies the ones before: a growing slice of 205,000
// events was reallocated and copied ~30 times in BenchmarkIngest, 6% of the
// benchmark process's CPU, which shares the machine with the worker measured.
type eventLog struct {
	chunks [][]Event
	n      int
}

const eventChunk = 4096

func (l *eventLog) add(es []Event) {
	for _, e := range es {
		if len(l.chunks) == 0 || len(l.chunks[len(l.chunks)-1]) == eventChunk {
			l.chunks = append(l.chunks, make([]Event, 0, eventChunk))
		}
		last := &l.chunks[len(l.chunks)-1]
		*last = append(*last, e)
	}
	l.n += len(es)
}

// all returns a copy of every event in order.
func (l *eventLog) all() []Event {
	out := make([]Event, 0, l.n)
	for _, c := range l.chunks {
		out = append(out, c...)
	}
	return out
}

// validChannelName reports whether ch matches ^[-a-zA-Z0-9_=@,.;]+$, Pusher's
// channel name characters, without the regexp engine (~5% of the fake's CPU
// in BenchmarkIngest; TestValidChannelName holds it to the expression).
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
