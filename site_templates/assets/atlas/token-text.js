// How tokens are shown. tokens.arrow's `text` is what a token stands for in its sentence, whitespace before it
// included (" empire"); `piece` is the tokenizer's raw piece ("Ġempire"). Leading whitespace is drawn as visible
// marks (␣ space, ↵ line break, ⇥ tab) and a token with no text of its own as ◌ (a byte of a character that the
// next token completes, or a lone word-start marker). Search ignores the marks and letter case.

const MARKS = { " ": "␣", "\n": "↵", "\t": "⇥", "\r": "" };
const LEADING_SPACE = /^\s+/u;
const LEADING_MARKS = /^[␣↵⇥◌\s]+/u;
export const EMPTY = "◌";
export const TOKEN_KEY = "␣ space before the token · ↵ line break · ◌ no text of its own (part of the next token's character)";

export function displayToken(text) {
  if (text === "") return EMPTY;
  return text.replace(LEADING_SPACE, (run) => Array.from(run, (c) => MARKS[c] ?? MARKS[" "]).join(""));
}

// The form search compares: marks and surrounding whitespace dropped, lower case.
export function normalizeToken(text) {
  return text.replace(LEADING_MARKS, "").trim().toLowerCase();
}

// "piece Ġempire" when the tokenizer's piece differs from what is shown, else "".
export function pieceNote(piece, shown) {
  return piece && displayToken(piece) !== shown ? `piece ${piece}` : "";
}
