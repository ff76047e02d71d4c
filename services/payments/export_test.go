package payments

// Remembered returns how many charge and refund keys s remembers.
func (s *Simulator) Remembered() (charges, refunds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.charges), len(s.refunds)
}
