// Package balancer picks an upstream target for each request. A [Balancer]
// owns a policy (smooth weighted round robin, least request with two random
// choices, or consistent hashing with bounded loads) and an immutable
// snapshot of the usable targets in an [atomic.Pointer]. [Balancer.Update]
// rebuilds the snapshot when health changes; [Balancer.Pick] reads it and
// takes no lock, so it may be called from any goroutine at any time.
//
// The split follows gRPC's: the balancer runs on one goroutine and
// publishes a picker that the request path only reads
// (grpc:balancer/balancer.go, Picker). Each policy lives in its own file.
package balancer

import (
	"math"
	"strconv"
	"sync/atomic"

	"candor/internal/upstream"
)

// Picker chooses a target for one request; key is the request's hash key
// ("" when the policy needs none or the request lacks it). Pick returns nil
// when no target can be used. Pick never locks and may be called from any
// goroutine at any time.
type Picker interface {
	Pick(key string) *upstream.Target
}

// Policy is a target selection policy.
type Policy uint8

// The policies. The zero value is [PolicyRoundRobin].
const (
	// PolicyRoundRobin is nginx's smooth weighted round robin; see
	// roundrobin.go.
	PolicyRoundRobin Policy = iota
	// PolicyLeastRequest picks the less loaded of two random targets (gRFC
	// A48, Envoy's LEAST_REQUEST); see leastrequest.go.
	PolicyLeastRequest
	// PolicyConsistentHash maps the request's key onto a hash ring with
	// bounded loads (Mirrokni, Thorup and Zadimoghaddam, 2017); see
	// consistenthash.go.
	PolicyConsistentHash
)

// String returns the policy's configuration name.
func (p Policy) String() string {
	switch p {
	case PolicyRoundRobin:
		return "round_robin"
	case PolicyLeastRequest:
		return "least_request"
	case PolicyConsistentHash:
		return "consistent_hash"
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// DefaultHashLoadFactor is the bounded-load factor c used when
// [Options.HashLoadFactor] is unset.
const DefaultHashLoadFactor = 1.25

// Options configure a [Balancer].
type Options struct {
	// Policy selects the algorithm. Default: [PolicyRoundRobin].
	Policy Policy
	// HashLoadFactor is the bounded-load factor c of
	// [PolicyConsistentHash]: a target takes a key only while its requests
	// in flight stay below c times its weighted share of the total (plus
	// the new request). 0 (or NaN) means the default, 1.25; values below 1
	// are raised to 1, which would leave no slack at all.
	HashLoadFactor float64
	// TargetMaxConcurrent bounds the requests in flight to each target: a
	// target with InFlight() >= TargetMaxConcurrent is skipped and the
	// policy's next candidate is tried. When every usable target is at its
	// limit Pick returns nil, and the proxy answers 503
	// upstream_overloaded (it tells this apart from "no usable target"
	// with [Balancer.Usable]). 0 means unlimited.
	TargetMaxConcurrent int64
}

// Balancer owns a policy and the current snapshot of usable targets. New
// and Update may be called from one goroutine at a time (the health
// checker's); Pick may be called from any goroutine at any time and reads
// the snapshot without locking.
type Balancer struct {
	opt Options
	// next is the round-robin position. It lives here rather than in the
	// snapshot so that an Update does not restart the sequence, which
	// would favour the first targets when health flaps.
	next atomic.Uint64
	snap atomic.Pointer[snapshot]
}

// New returns a Balancer whose usable targets are initially all of
// targets, in configuration order. Each target's Weight must be set
// before; a Weight below 1 counts as 1.
func New(opt Options, targets []*upstream.Target) *Balancer {
	if opt.HashLoadFactor == 0 || math.IsNaN(opt.HashLoadFactor) {
		opt.HashLoadFactor = DefaultHashLoadFactor
	}
	opt.HashLoadFactor = max(opt.HashLoadFactor, 1)
	opt.TargetMaxConcurrent = max(opt.TargetMaxConcurrent, 0)
	b := &Balancer{opt: opt}
	b.Update(targets)
	return b
}

// NewRoundRobin returns a smooth weighted round-robin Balancer over
// targets (which may be empty), with no per-target limit.
func NewRoundRobin(targets []*upstream.Target) *Balancer {
	return New(Options{Policy: PolicyRoundRobin}, targets)
}

// Update replaces the usable targets: usable is a subset of the targets
// in configuration order (possibly empty). Picks that started before
// Update returns may still see the previous snapshot. The slice is copied.
func (b *Balancer) Update(usable []*upstream.Target) {
	b.snap.Store(b.build(usable))
}

// Pick chooses a target for a request with hash key key; see [Picker].
func (b *Balancer) Pick(key string) *upstream.Target {
	s := b.snap.Load()
	if len(s.targets) == 0 {
		return nil
	}
	switch b.opt.Policy {
	case PolicyLeastRequest:
		return s.leastRequest()
	case PolicyConsistentHash:
		if key != "" {
			return s.consistentHash(key)
		}
	}
	return s.roundRobin(b.next.Add(1) - 1)
}

// Usable returns the number of usable targets in the current snapshot.
// When Pick returns nil and Usable is positive, every usable target was at
// [Options.TargetMaxConcurrent].
func (b *Balancer) Usable() int { return len(b.snap.Load().targets) }

// Policy returns the balancer's policy.
func (b *Balancer) Policy() Policy { return b.opt.Policy }

var _ Picker = (*Balancer)(nil)

// snapshot is an immutable view of the usable targets, with the
// precomputed state of the balancer's policy.
type snapshot struct {
	// targets are the usable targets, in configuration order.
	targets []*upstream.Target
	// weights are the targets' weights, at least 1.
	weights []int64
	// limit is Options.TargetMaxConcurrent (0: unlimited).
	limit int64
	// seq is the smooth weighted round-robin order, as indexes into
	// targets (round robin, and consistent hashing without a key).
	seq []uint32
	// ring is the consistent-hash ring (consistent hashing only).
	ring ring
}

func (b *Balancer) build(usable []*upstream.Target) *snapshot {
	s := &snapshot{
		targets: append([]*upstream.Target(nil), usable...),
		weights: make([]int64, len(usable)),
		limit:   b.opt.TargetMaxConcurrent,
	}
	for i, tg := range s.targets {
		s.weights[i] = int64(max(tg.Weight, 1))
	}
	if len(s.targets) == 0 {
		return s
	}
	switch b.opt.Policy {
	case PolicyRoundRobin:
		s.seq = smoothSequence(fitWeights(s.weights, maxSequence))
	case PolicyConsistentHash:
		s.seq = smoothSequence(fitWeights(s.weights, maxSequence))
		s.ring = buildRing(s.targets, s.weights, b.opt.HashLoadFactor)
	}
	return s
}

// fits reports whether a target with load requests in flight is below the
// per-target limit.
func (s *snapshot) fits(load int64) bool {
	return s.limit == 0 || load < s.limit
}

// firstFit scans the targets in configuration order from index start and
// returns the first below the per-target limit, or nil when all are at
// it. It is the last resort of every policy, so that Pick returns nil only
// when no usable target can take the request.
func (s *snapshot) firstFit(start int) *upstream.Target {
	n := len(s.targets)
	for k := range n {
		tg := s.targets[(start+k)%n]
		if s.fits(tg.InFlight()) {
			return tg
		}
	}
	return nil
}
