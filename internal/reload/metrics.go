package reload

import "candor/internal/telemetry"

// targetStats reads the live state of the current generation's targets for
// the metrics collector (telemetry.NewTargetCollector), at scrape time.
func (s *State) targetStats() []telemetry.TargetStat {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	var out []telemetry.TargetStat
	for name, up := range g.Upstreams {
		// States are in configuration order, like Targets.
		states := up.Health.States()
		for i, tg := range up.Transport.Targets() {
			st := telemetry.TargetStat{Upstream: name, Target: tg.Addr, Usable: !up.Drained(i)}
			if i < len(states) {
				st.Usable = st.Usable && states[i].Healthy
				st.Ejections = uint64(states[i].Ejections)
			}
			st.Opened, st.Reused, st.Discarded = tg.ConnStats()
			out = append(out, st)
		}
	}
	return out
}
