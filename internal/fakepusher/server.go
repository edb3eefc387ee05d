// Package fakepusher is an in-process fake of Pusher Channels' HTTP publishing
// API (POST /apps/{app_id}/events, /apps/{app_id}/batch_events and
// /apps/{app_id}/users/{user_id}/terminate_connections).
//
// It authenticates and validates every request the way Pusher does (signature,
// timestamp window, body MD5, payload limits) so that the real pusher-http-go
// client can be tested against it, records what it accepts, and can inject
// latency, failures, outages and per-event rejections.
package fakepusher

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	maxBodyBytes         = 1 << 20
	statusClientClosed   = 499 // recorded when the caller gave up during injected latency
	eventsEndpoint       = "events"
	batchEventsEndpoint  = "batch_events"
	terminateEndpoint    = "terminate_connections" // see terminate.go
	contentTypePlainText = "text/plain; charset=utf-8"
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

	mu           sync.Mutex
	seq          int64
	events       eventLog
	terminations []Termination
	calls        []Call
	changed      chan struct{} // closed and replaced whenever events or terminations change or the server closes
	closed       bool
	latency      time.Duration
	failN        int
	failCode     int
	down         bool
	reject       func(Event) int
	rejectUser   func(userID string) int
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

// outcome is the decision taken for one call before latency is applied.
type outcome struct {
	status int
	body   string // plain text for errors, JSON for 200
	reason string // for the log
	events []Event
	user   string // the user whose connections an accepted terminate call closes
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
	if o.status == http.StatusOK && o.user != "" {
		s.terminations = append(s.terminations, Termination{UserID: o.user, Call: c.Seq, ReceivedAt: c.At})
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
	endpoint, user, ok := s.route(r)
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
	reject, rejectUser := s.reject, s.rejectUser
	s.mu.Unlock()
	if down {
		return fail(http.StatusServiceUnavailable, "service unavailable")
	}
	if failing {
		return fail(validStatus(failCode), "injected failure (%d)", failCode)
	}

	if endpoint == terminateEndpoint {
		return decideTermination(user, body, rejectUser)
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

// route reports which publishing endpoint r addresses, if it is a POST to
// this app, and for a terminate call the user it names.
func (s *Server) route(r *http.Request) (endpoint, user string, ok bool) {
	if r.Method != http.MethodPost {
		return "", "", false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/apps/")
	if !ok {
		return "", "", false
	}
	appID, endpoint, ok := strings.Cut(rest, "/")
	if !ok || appID != s.cfg.AppID {
		return "", "", false
	}
	if user, ok := terminatePath(endpoint); ok {
		return terminateEndpoint, user, true
	}
	if endpoint != eventsEndpoint && endpoint != batchEventsEndpoint {
		return "", "", false
	}
	return endpoint, "", true
}
