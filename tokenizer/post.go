package tokenizer

// postProcessor adds special tokens around a single encoded sequence.
type postProcessor interface {
	process(ids []int) []int
}

// templateProcessor is TemplateProcessing's single template flattened to
// the ids before and after the sequence.
type templateProcessor struct {
	before, after []int
}

func (p *templateProcessor) process(ids []int) []int {
	if len(p.before) == 0 && len(p.after) == 0 {
		return ids
	}
	out := make([]int, 0, len(p.before)+len(ids)+len(p.after))
	out = append(out, p.before...)
	out = append(out, ids...)
	return append(out, p.after...)
}

type seqProcessor []postProcessor

func (q seqProcessor) process(ids []int) []int {
	for _, p := range q {
		ids = p.process(ids)
	}
	return ids
}

// noopProcessor is ByteLevel's post-processor, which only trims offsets.
type noopProcessor struct{}

func (noopProcessor) process(ids []int) []int { return ids }

// boundary returns the first id added before and the last id added after
// the sequence, or -1.
func boundary(p postProcessor) (bos, eos int) {
	bos, eos = -1, -1
	switch p := p.(type) {
	case *templateProcessor:
		if len(p.before) > 0 {
			bos = p.before[0]
		}
		if len(p.after) > 0 {
			eos = p.after[len(p.after)-1]
		}
	case seqProcessor:
		for _, q := range p {
			b, e := boundary(q)
			if b >= 0 {
				bos = b
			}
			if e >= 0 {
				eos = e
			}
		}
	}
	return bos, eos
}
