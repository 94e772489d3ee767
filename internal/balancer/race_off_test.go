//go:build !race

package balancer

// raceEnabled: the race detector adds allocations, so allocation counts are
// not checked under it.
const raceEnabled = false
