package localstack_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/roomcast/roomcast/internal/localstack"
)

// groupMember speaks the classic group protocol (JoinGroup, SyncGroup) on a
// connection of its own, as one consumer process does.
type groupMember struct {
	t        *testing.T
	cl       *kgo.Client
	conns    chan net.Conn // the client's connections, for die
	group    string
	id       string
	session  time.Duration
	rebal    time.Duration
	metadata []byte
}

func newGroupMember(t *testing.T, k *localstack.Kafka, group string, session, rebalance time.Duration) *groupMember {
	t.Helper()
	// A JoinGroup may wait up to the rebalance timeout; the overhead keeps
	// the client from giving up on it before the test does.
	conns := make(chan net.Conn, 100)
	dial := func(ctx context.Context, network, host string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, host)
		if err == nil {
			conns <- c
		}
		return c, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...), kgo.RequestTimeoutOverhead(2*time.Minute), kgo.Dialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"t"}
	return &groupMember{t: t, cl: cl, conns: conns, group: group, session: session, rebal: rebalance, metadata: meta.AppendTo(nil)}
}

// die closes the member's connections at once, as the kernel does for a
// killed process.
func (m *groupMember) die() {
	for {
		select {
		case c := <-m.conns:
			_ = c.Close()
		default:
			m.cl.Close()
			return
		}
	}
}

// join sends JoinGroup until the broker answers it with something other
// than MEMBER_ID_REQUIRED (a new member's first join) and returns that
// answer; it blocks while the group prepares a rebalance.
func (m *groupMember) join(ctx context.Context) (*kmsg.JoinGroupResponse, error) {
	for {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group = m.group
		req.MemberID = m.id
		req.SessionTimeoutMillis = int32(m.session.Milliseconds())
		req.RebalanceTimeoutMillis = int32(m.rebal.Milliseconds())
		req.ProtocolType = "consumer"
		req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: m.metadata}}
		resp, err := req.RequestWith(ctx, m.cl)
		if err != nil {
			return nil, err
		}
		if resp.ErrorCode == kerr.MemberIDRequired.Code {
			m.id = resp.MemberID
			continue
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return resp, fmt.Errorf("join group %s: %w", m.group, err)
		}
		m.id = resp.MemberID
		return resp, nil
	}
}

// sync sends SyncGroup for generation, as the leader when it assigns.
func (m *groupMember) sync(ctx context.Context, generation int32, assign bool) error {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group = m.group
	req.MemberID = m.id
	req.Generation = generation
	req.ProtocolType = kmsg.StringPtr("consumer")
	req.Protocol = kmsg.StringPtr("range")
	if assign {
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID = m.id
		assignment := kmsg.NewConsumerMemberAssignment()
		a.MemberAssignment = assignment.AppendTo(nil)
		req.GroupAssignment = append(req.GroupAssignment, a)
	}
	resp, err := req.RequestWith(ctx, m.cl)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.ErrorCode)
}

// heartbeat sends one Heartbeat for generation and returns the broker's error.
func (m *groupMember) heartbeat(ctx context.Context, generation int32) error {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group = m.group
	req.MemberID = m.id
	req.Generation = generation
	resp, err := req.RequestWith(ctx, m.cl)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.ErrorCode)
}

// describe returns the group's state and member ids.
func (m *groupMember) describe(ctx context.Context) (string, []string) {
	m.t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{m.group}
	resp, err := req.RequestWith(ctx, m.cl)
	if err != nil || len(resp.Groups) != 1 {
		m.t.Fatalf("describe group %s: %v", m.group, err)
	}
	var ids []string
	for _, mem := range resp.Groups[0].Members {
		ids = append(ids, mem.MemberID)
	}
	return resp.Groups[0].State, ids
}

// waitState waits until the group is in state with n members.
func (m *groupMember) waitState(ctx context.Context, state string, n int) {
	m.t.Helper()
	for {
		got, ids := m.describe(ctx)
		if got == state && len(ids) == n {
			return
		}
		select {
		case <-ctx.Done():
			m.t.Fatalf("group %s: %s with %d members, want %s with %d", m.group, got, len(ids), state, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
