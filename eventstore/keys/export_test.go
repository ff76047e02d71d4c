package keys

// SetBeforeMark makes f run inside Erase, between its overwriting of the
// revisions and its delete marker, until the test ends.
func SetBeforeMark(cleanup func(func()), f func()) {
	beforeMark = f
	cleanup(func() { beforeMark = nil })
}
