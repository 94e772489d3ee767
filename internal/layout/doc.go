// Package layout holds no code: its tests enforce candor's package layout
// and import rules (STYLE.md §1, §3), so that they fail CI rather than
// drift.
package layout
