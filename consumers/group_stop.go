package consumers

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// leaveTimeout bounds what a stop does after the partitions were drained:
// Sarama's commit and LeaveGroup, and the explicit leave of a static member.
const leaveTimeout = 5 * time.Second

var (
	errConnsCut = errors.New("keyed subscriber: stopping: connection cut")
	errStopping = errors.New("keyed subscriber: stopping")
)

// groupConns dials the connections of one subscription's Sarama clients and
// can cut them, so that a stop is never held by a request the broker keeps
// waiting: Sarama reads a JoinGroup for up to Net.ReadTimeout, cannot cancel
// it, and its Close waits for it (it takes the same lock), so a SIGTERM
// during a stalled rebalance would wait that long.
type groupConns struct {
	dialer interface {
		Dial(network, addr string) (net.Conn, error)
	}

	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
	refused bool // cut: no new connections either
	crashed bool // crash (tests): do not leave the group
}

func newGroupConns(sc *sarama.Config) *groupConns {
	g := &groupConns{conns: make(map[*trackedConn]struct{})}
	if sc.Net.Proxy.Enable && sc.Net.Proxy.Dialer != nil {
		g.dialer = sc.Net.Proxy.Dialer
	} else {
		g.dialer = &net.Dialer{Timeout: sc.Net.DialTimeout, KeepAlive: sc.Net.KeepAlive, LocalAddr: sc.Net.LocalAddr}
	}
	return g
}

// config returns a copy of sc that dials through g (TLS and SASL still
// apply: Sarama wraps the connection it is given).
func (g *groupConns) config(sc *sarama.Config) *sarama.Config {
	c := *sc
	c.Net.Proxy.Enable = true
	c.Net.Proxy.Dialer = g
	return &c
}

// Dial is Sarama's dialer (Net.Proxy.Dialer).
func (g *groupConns) Dial(network, addr string) (net.Conn, error) {
	g.mu.Lock()
	refused := g.refused
	g.mu.Unlock()
	if refused {
		return nil, errConnsCut
	}
	c, err := g.dialer.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, g: g}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refused {
		_ = c.Close()
		return nil, errConnsCut
	}
	g.conns[tc] = struct{}{}
	return tc, nil
}

// interrupt closes the connections open now: a request waiting on one fails
// at once. Sarama opens new ones as it needs them (to leave the group).
func (g *groupConns) interrupt() {
	g.mu.Lock()
	conns := make([]*trackedConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// cut closes every connection and refuses new ones.
func (g *groupConns) cut() {
	g.mu.Lock()
	g.refused = true
	g.mu.Unlock()
	g.interrupt()
}

// crash cuts like a killed process: nothing more reaches the broker, and the
// stop that follows does not leave the group.
func (g *groupConns) crash() {
	g.mu.Lock()
	g.crashed = true
	g.mu.Unlock()
	g.cut()
}

type trackedConn struct {
	net.Conn
	g    *groupConns
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.g.mu.Lock()
		delete(c.g.conns, c)
		c.g.mu.Unlock()
	})
	return err
}

// unsubscribed forgets a subscription that ended.
func (s *KeyedSubscriber) unsubscribed(conns *groupConns, static bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if static {
		s.static = false
	}
	s.conns = slices.DeleteFunc(s.conns, func(c *groupConns) bool { return c == conns })
}

// stopping runs once the subscription's context ends (or Close is called).
// Between sessions, where Sarama joins the group, nothing is held and no
// offset waits for a commit: the connections are cut so that a JoinGroup
// the broker holds fails now instead of after up to Net.ReadTimeout. In a
// session, the partitions drain (DrainTimeout) and Sarama commits. Either
// way, everything is cut once DrainTimeout plus leaveTimeout have passed.
func (h *keyedGroupHandler) stopping() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	h.stopped = true
	if !h.inSession {
		h.conns.interrupt()
	}
	h.deadline = time.AfterFunc(h.s.cfg.DrainTimeout+leaveTimeout, h.conns.cut)
}

// joining records that the subscription's next Consume call joins the
// group; false when it is stopping.
func (h *keyedGroupHandler) joining() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inSession = false
	return !h.stopped
}

func (h *keyedGroupHandler) Setup(sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return errStopping
	}
	h.inSession = true // until the next Consume call: its release commits offsets
	return nil
}

func (*keyedGroupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// leave closes the consumer group (Sarama sends LeaveGroup for a dynamic
// member) and removes a static member explicitly: Sarama does not (KIP-345
// keeps a static member's partitions for its return), but a stopped worker
// may not return soon, and its partitions should move at once. After a crash
// (tests) neither happens, like after a SIGKILL: a static member then takes
// its partitions back when it rejoins with the same id.
func (h *keyedGroupHandler) leave(group sarama.ConsumerGroup, sc *sarama.Config, log *slog.Logger) {
	defer func() {
		h.mu.Lock()
		h.stopped = true
		if h.deadline != nil {
			h.deadline.Stop()
		}
		h.mu.Unlock()
	}()
	if err := group.Close(); err != nil && !errors.Is(err, errConnsCut) {
		log.Warn("close kafka consumer group", slog.Any("err", err))
	}
	h.conns.mu.Lock()
	crashed := h.conns.crashed
	h.conns.mu.Unlock()
	id := sc.Consumer.Group.InstanceId
	if id == "" || crashed {
		return
	}
	if err := removeStaticMember(h.s.cfg.Brokers, sc, h.s.cfg.ConsumerGroup, id); err != nil {
		log.Warn("leave kafka consumer group as static member; its partitions move once its session times out",
			slog.String("group_instance_id", id), slog.Any("err", err))
		return
	}
	log.Info("left kafka consumer group", slog.String("group_instance_id", id))
}

func removeStaticMember(brokers []string, sc *sarama.Config, group, id string) error {
	admin, err := sarama.NewClusterAdmin(brokers, sc)
	if err != nil {
		return err
	}
	defer func() { _ = admin.Close() }()
	resp, err := admin.RemoveMemberFromConsumerGroup(group, []string{id})
	if err != nil {
		return err
	}
	if resp.Err != sarama.ErrNoError {
		return resp.Err
	}
	for _, m := range resp.Members {
		// Unknown: the member was gone already (its session timed out).
		if m.Err != sarama.ErrNoError && m.Err != sarama.ErrUnknownMemberId {
			return fmt.Errorf("member %s: %w", id, m.Err)
		}
	}
	return nil
}
