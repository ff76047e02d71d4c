// Package corpus guards the meaning of stored history. testdata/events at the
// root of the module holds events of every type exactly as orderstream wrote
// them (subject, sequence, time, headers and payload bytes), each version of
// the contract adding files and never changing old ones. The tests decode
// every file with today's code and require the same domain facts, metadata
// and hash chain as when the file was written, so a change to the codec, the
// headers or the chain layout that would reinterpret history fails here even
// when `buf breaking` (which guards only the wire and JSON form) passes.
//
// The files are written once, by the generator in gen_test.go:
//
//	go test ./test/corpus -run TestWriteCorpus -corpus.write=v1
//
// It refuses to overwrite a set that exists; see docs/schema-evolution.md.
package corpus
