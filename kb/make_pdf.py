"""Write small text PDFs with pypdf alone (no PDF toolkit needed): the knowledge base's PDF and test fixtures.

    python kb/make_pdf.py        # regenerates kb/docs/conch/retrieval-guide.pdf

Text uses the standard Helvetica font, so it is limited to Latin-1; each inner list of `pages` is one page of
lines. `pages=[[]]` makes a PDF with a page but no text layer, like a scanned document.
"""

from __future__ import annotations

from pathlib import Path

from pypdf import PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, TextStringObject


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path: str | Path, pages: list[list[str]], title: str | None = None) -> Path:
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    font_ref = writer._add_object(font)
    for lines in pages:
        page = writer.add_blank_page(width=612, height=792)
        if not lines:
            continue
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            ops.append(f"({_escape(line)}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = ArrayObject([writer._add_object(stream)])
        page[NameObject("/Resources")] = DictionaryObject(
            {
                NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref}),
            }
        )
    if title:
        writer.add_metadata({"/Title": TextStringObject(title)})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


GUIDE = [
    [
        "How the conch knowledge base finds answers",
        "",
        "Documents are split into chunks that respect headings and paragraphs.",
        "Chunk size and overlap are counted in tokens of the served model's tokenizer.",
        "Every chunk gets a stable id made from its source and its text.",
        "",
        "Each chunk is embedded with a sentence-transformers model and stored in a FAISS index.",
        "A BM25 keyword index is built beside it; Chinese text is segmented with jieba.",
    ],
    [
        "Hybrid retrieval",
        "",
        "A question is scored against both indexes. The hybrid similarity is a weighted sum",
        "of vector cosine similarity and keyword similarity; reciprocal rank fusion is the alternative.",
        "Chunks under the similarity threshold are dropped, and the top k are returned.",
        "An optional cross-encoder reranker can reorder the candidates before the cut.",
        "",
        "Embeddings are cached by chunk id in SQLite, so changing one document re-embeds only its chunks.",
    ],
]

if __name__ == "__main__":
    out = write_pdf(
        Path(__file__).parent / "docs" / "conch" / "retrieval-guide.pdf",
        GUIDE,
        title="How the conch knowledge base finds answers",
    )
    print(f"wrote {out} ({out.stat().st_size} bytes)")
