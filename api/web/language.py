"""The public check's two languages, Bahasa Malaysia (``ms``) and English (``en``), and which one a visitor gets.

``choose`` takes the language asked for in the page's address (``?lang=ms``, the switch the page links to),
else the first of ``ms``/``en`` the browser's ``Accept-Language`` ranks highest, else Bahasa Malaysia, the
national language. ``TEXT`` holds every sentence the public pages show, one dictionary per language with the
same keys (a unit test holds them equal), so a page never mixes languages.
"""

from __future__ import annotations

LANGUAGES = ("ms", "en")
DEFAULT = "ms"


def choose(asked: str | None, accept_language: str | None) -> str:
    """The language to answer in: ``asked`` if it is one of ours, else the browser's preference, else ``ms``."""
    if asked in LANGUAGES:
        return asked
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary == "zsm":  # ISO 639-3 for Standard Malay
            primary = "ms"
        if primary in LANGUAGES and weight > 0:
            ranked.append((-weight, position, primary))
    return min(ranked)[2] if ranked else DEFAULT


TEXT: dict[str, dict[str, str]] = {
    "ms": {
        "title": "Semak nombor telefon atau akaun bank",
        "intro": "Sebelum anda membayar atau memindahkan wang, semak sama ada nombor telefon atau akaun bank "
                 "itu telah disenaraikan oleh pihak berkuasa kerana digunakan dalam penipuan.",
        "switch": "English",
        "switch_lang": "en",
        "kind_legend": "Apa yang anda mahu semak?",
        "kind_phone": "Nombor telefon",
        "kind_account": "Akaun bank",
        "phone_label": "Nombor telefon",
        "phone_hint": "Contoh: 012-345 6789 atau +60 12-345 6789",
        "bank_label": "Bank",
        "bank_choose": "Pilih bank",
        "account_label": "Nombor akaun",
        "account_hint": "Angka sahaja; ruang dan sengkang dibenarkan",
        "account_note": "Untuk akaun bank, pilih bank dan masukkan nombor akaun.",
        "submit": "Semak",
        "privacy": "Kami tidak menyimpan apa yang anda semak.",
        "listed_heading": "Berhati-hati: {what} ini telah disenaraikan",
        "listed_body": "Pihak berkuasa telah melaporkan {what} ini sebagai digunakan dalam penipuan.",
        "listed_do": "Jangan bayar atau pindahkan wang kepadanya.|Jangan berikan TAC, OTP atau kata laluan anda.|"
                     "Jika anda sudah membayar, hubungi Pusat Respons Scam Kebangsaan di 997 dengan segera, "
                     "kemudian bank anda.",
        "appeal_heading": "Adakah ini nombor atau akaun anda sendiri?",
        "appeal_body": "Jika anda percaya ia disenaraikan secara silap, buat rayuan: pergi ke bank anda (untuk "
                       "akaun) atau syarikat telekomunikasi anda (untuk nombor telefon) dengan kad pengenalan "
                       "anda. Mereka akan menghantar rayuan anda kepada pihak berkuasa yang menyenaraikannya. "
                       "Disenaraikan tidak bermakna anda didakwa atas apa-apa kesalahan.",
        "clean_heading": "{What} ini tidak disenaraikan",
        "clean_body": "Tiada pihak berkuasa yang menyenaraikan {what} ini. Ini tidak bermakna ia selamat: "
                      "penipu kerap menukar nombor dan akaun.",
        "clean_do": "Jika anda ragu-ragu, jangan bayar dahulu.|Hubungi 997 jika anda rasa anda sedang ditipu.",
        "what_phone": "nombor telefon",
        "what_account": "akaun bank",
        "What_phone": "Nombor telefon",
        "What_account": "Akaun bank",
        "again": "Semak nombor atau akaun lain",
        "error_heading": "Sila betulkan maklumat ini",
        "error_phone": "Ini bukan nombor telefon yang kami kenali. Contoh: 012-345 6789.",
        "error_account": "Masukkan nombor akaun dalam angka (ruang dan sengkang dibenarkan).",
        "error_bank": "Pilih bank akaun itu.",
        "error_kind": "Pilih sama ada nombor telefon atau akaun bank.",
        "too_many": "Terlalu banyak semakan dari sambungan anda. Cuba lagi dalam {seconds} saat.",
        "unavailable": "Semakan tidak tersedia sekarang. Cuba lagi sebentar lagi.",
        "help": "Ditipu? Hubungi 997 (Pusat Respons Scam Kebangsaan).",
    },
    "en": {
        "title": "Check a phone number or bank account",
        "intro": "Before you pay or transfer money, check whether the phone number or bank account has been "
                 "listed by the authorities as used in scams.",
        "switch": "Bahasa Malaysia",
        "switch_lang": "ms",
        "kind_legend": "What do you want to check?",
        "kind_phone": "Phone number",
        "kind_account": "Bank account",
        "phone_label": "Phone number",
        "phone_hint": "For example: 012-345 6789 or +60 12-345 6789",
        "bank_label": "Bank",
        "bank_choose": "Choose the bank",
        "account_label": "Account number",
        "account_hint": "Digits only; spaces and dashes are fine",
        "account_note": "For a bank account, choose the bank and enter the account number.",
        "submit": "Check",
        "privacy": "We do not keep what you check.",
        "listed_heading": "Be careful: this {what} is listed",
        "listed_body": "The authorities have reported this {what} as used in scams.",
        "listed_do": "Do not pay or transfer money to it.|Never give your TAC, OTP or password.|"
                     "If you have already paid, call the National Scam Response Centre on 997 at once, "
                     "then your bank.",
        "appeal_heading": "Is this your own number or account?",
        "appeal_body": "If you believe it is listed by mistake, appeal: go to your bank (for an account) or your "
                       "mobile operator (for a phone number) with your identity card. They pass your appeal to "
                       "the authority that listed it. Being listed does not mean you are charged with any "
                       "offence.",
        "clean_heading": "This {what} is not listed",
        "clean_body": "No authority has listed this {what}. That does not mean it is safe: scammers change "
                      "numbers and accounts often.",
        "clean_do": "If you are unsure, do not pay yet.|Call 997 if you think you are being scammed.",
        "what_phone": "phone number",
        "what_account": "bank account",
        "What_phone": "Phone number",
        "What_account": "Bank account",
        "again": "Check another number or account",
        "error_heading": "Please correct this",
        "error_phone": "This is not a phone number we recognise. For example: 012-345 6789.",
        "error_account": "Enter the account number in digits (spaces and dashes are fine).",
        "error_bank": "Choose the account's bank.",
        "error_kind": "Choose a phone number or a bank account.",
        "too_many": "Too many checks from your connection. Try again in {seconds} seconds.",
        "unavailable": "The check is not available right now. Please try again shortly.",
        "help": "Scammed? Call 997 (National Scam Response Centre).",
    },
}
