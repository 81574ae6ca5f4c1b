"""The built-in synthetic EN->ES sample: number phrases 0-999 with their Spanish forms.

Written out here (rather than depending on ``num2words``) so the sample is deterministic and offline; the rules
follow the Real Academia's spelling of cardinals (``veintiún``/``un`` before a masculine noun, ``cien`` alone).
"""

from __future__ import annotations


def _words(text: str) -> list[str]:
    return text.split()

_EN_SMALL = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_EN_TENS = _words("_ _ twenty thirty forty fifty sixty seventy eighty ninety")
_ES_SMALL = _words(
    "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
    "dieciséis diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés "
    "veinticuatro veinticinco veintiséis veintisiete veintiocho veintinueve"
)
_ES_TENS = _words("_ _ _ treinta cuarenta cincuenta sesenta setenta ochenta noventa")
_ES_HUNDREDS = _words(
    "_ ciento doscientos trescientos cuatrocientos quinientos seiscientos setecientos "
    "ochocientos novecientos"
)


def english(n: int) -> str:
    """American English cardinal for 0 <= n <= 999 ("three hundred forty-two")."""
    if not 0 <= n <= 999:
        raise ValueError(f"only 0-999 are supported, got {n}")
    if n < 20:
        return _EN_SMALL[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _EN_TENS[tens] + (f"-{_EN_SMALL[unit]}" if unit else "")
    hundreds, rest = divmod(n, 100)
    return f"{_EN_SMALL[hundreds]} hundred" + (f" {english(rest)}" if rest else "")


def spanish(n: int, *, before_noun: bool = False) -> str:
    """Spanish cardinal for 0 <= n <= 999; ``before_noun`` apocopates a final "uno" (veintiún, treinta y un)."""
    if not 0 <= n <= 999:
        raise ValueError(f"only 0-999 are supported, got {n}")
    if n < 30:
        word = _ES_SMALL[n]
    elif n < 100:
        tens, unit = divmod(n, 10)
        word = _ES_TENS[tens] + (f" y {_ES_SMALL[unit]}" if unit else "")
    else:
        hundreds, rest = divmod(n, 100)
        if hundreds == 1 and rest == 0:
            return "cien"
        return _ES_HUNDREDS[hundreds] + (f" {spanish(rest, before_noun=before_noun)}" if rest else "")
    if before_noun:
        if word == "veintiuno":
            return "veintiún"
        if word.endswith("uno"):
            return word[:-3] + "un"
    return word


def sample_pairs() -> list[tuple[str, str]]:
    """About 1,500 deterministic (English, Spanish) pairs: bare numbers and two sentence templates."""
    pairs = [(english(n), spanish(n)) for n in range(1000)]
    for n in range(1, 1000, 4):  # odd numbers too, so the apocope ("veintiún libros") is learned
        if n == 1:
            continue
        pairs.append((f"I have {english(n)} books.", f"Tengo {spanish(n, before_noun=True)} libros."))
    for n in range(3, 1000, 4):
        pairs.append((f"There are {english(n)} cats.", f"Hay {spanish(n, before_noun=True)} gatos."))
    return pairs
