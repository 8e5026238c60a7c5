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
        "appeal_body": "Jika anda percaya ia disenaraikan secara silap, buat rayuan dalam talian, atau pergi ke "
                       "bank anda (untuk akaun) atau syarikat telekomunikasi anda (untuk nombor telefon) dengan "
                       "kad pengenalan anda. Rayuan anda dihantar kepada pihak berkuasa yang menyenaraikannya. "
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
        "skip": "Langkau ke kandungan",
        "nav_label": "Halaman",
        "nav_check": "Semak",
        "nav_appeal": "Buat rayuan",
        "nav_status": "Status rayuan",
        "appeal_link": "Buat rayuan dalam talian",
        "appeal_title": "Rayuan terhadap penyenaraian",
        "appeal_intro": "Jika nombor telefon atau akaun bank anda disenaraikan secara silap (contohnya nombor "
                        "anda dipalsukan oleh penipu, atau akaun anda digunakan tanpa pengetahuan anda), "
                        "isi borang ini. Rayuan anda dihantar kepada pihak berkuasa yang menyenaraikannya.",
        "appeal_kind_legend": "Apa yang disenaraikan?",
        "appellant_label": "Siapa yang membuat rayuan?",
        "appellant_person": "Saya sendiri (pemilik nombor atau akaun)",
        "appellant_bank": "Bank, bagi pihak pelanggannya",
        "appellant_telco": "Syarikat telekomunikasi, bagi pihak pelanggannya",
        "contact_legend": "Cara menghubungi anda",
        "contact_hint": "Berikan alamat e-mel atau nombor telefon sekurang-kurangnya. Hanya pihak berkuasa yang "
                        "menyemak rayuan anda melihatnya.",
        "name_label": "Nama penuh",
        "email_label": "E-mel",
        "contact_phone_label": "Nombor telefon untuk dihubungi",
        "grounds_label": "Mengapa penyenaraian ini silap?",
        "grounds_hint": "Terangkan apa yang berlaku. Paling banyak 4000 aksara.",
        "evidence_label": "Rujukan bukti (pilihan)",
        "evidence_hint": "Contohnya nombor laporan polis atau nombor kes bank anda.",
        "appeal_submit": "Hantar rayuan",
        "appeal_privacy": "Maklumat anda digunakan untuk rayuan ini sahaja dan dipadam mengikut tempoh simpanan "
                          "yang ditetapkan.",
        "filed_heading": "Rayuan anda telah diterima",
        "filed_keep": "Simpan ID rayuan dan token ini. Token ini ditunjukkan sekali sahaja; anda memerlukan "
                      "kedua-duanya untuk menyemak status rayuan.",
        "filed_next": "Semak status rayuan anda bila-bila masa:",
        "appeal_id_label": "ID rayuan",
        "token_label": "Token",
        "acknowledge_by_label": "Akan diakui selewat-lewatnya",
        "decide_by_label": "Akan diputuskan selewat-lewatnya",
        "refused_heading": "Rayuan tidak dapat dihantar",
        "refused_not_listed": "Nombor atau akaun ini tidak disenaraikan oleh mana-mana pihak berkuasa, jadi tiada "
                              "apa-apa untuk dirayu. Semak semula nombor atau akaun yang anda masukkan.",
        "refused_open": "Sudah ada rayuan yang masih dibuka untuk nombor atau akaun ini. Ikuti rayuan itu dengan "
                        "ID rayuan dan tokennya.",
        "refused_rejected": "Rayuan untuk nombor atau akaun ini telah ditolak. Anda boleh merayu semula mulai "
                            "{date}.",
        "refused_busy": "Satu rayuan untuk nombor atau akaun ini sedang dihantar. Cuba lagi sebentar lagi.",
        "too_many_appeals": "Terlalu banyak rayuan dari sambungan anda. Cuba lagi dalam {seconds} saat.",
        "error_contact": "Berikan alamat e-mel atau nombor telefon untuk dihubungi.",
        "error_name": "Masukkan nama penuh anda (paling banyak 128 aksara).",
        "error_email": "Ini bukan alamat e-mel yang sah. Contoh: nama@contoh.my.",
        "error_contact_phone": "Nombor telefon untuk dihubungi terlalu panjang (paling banyak 32 aksara).",
        "error_grounds": "Terangkan mengapa penyenaraian ini silap (paling banyak 4000 aksara).",
        "error_evidence_ref": "Rujukan bukti terlalu panjang (paling banyak 256 aksara).",
        "status_title": "Status rayuan",
        "status_intro": "Masukkan ID rayuan dan token yang diberikan semasa anda membuat rayuan.",
        "status_submit": "Semak status",
        "filed_at_label": "Dihantar pada",
        "decided_at_label": "Diputuskan pada",
        "reappeal_label": "Boleh merayu semula mulai",
        "stage_received": "Diterima",
        "stage_received_body": "Rayuan anda telah diterima dan menunggu untuk disemak oleh pihak berkuasa.",
        "stage_under_review": "Sedang disemak",
        "stage_under_review_body": "Pihak berkuasa sedang menyemak rayuan anda. Mereka mungkin menghubungi anda.",
        "stage_upheld": "Diterima: penyenaraian dibatalkan",
        "stage_upheld_body": "Rayuan anda diterima. Nombor atau akaun itu tidak lagi disenaraikan, dan bank atau "
                             "syarikat telekomunikasi telah dimaklumkan untuk memulihkannya.",
        "stage_rejected": "Ditolak",
        "stage_rejected_body": "Rayuan anda ditolak; penyenaraian kekal. Anda boleh merayu semula mulai tarikh di "
                               "bawah, atau hubungi 997.",
        "error_appeal_id": "Masukkan ID rayuan.",
        "error_token": "Masukkan token rayuan.",
        "error_not_found": "Tiada rayuan dengan ID ini, atau token tidak sepadan. Semak kedua-duanya.",
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
        "appeal_body": "If you believe it is listed by mistake, appeal online, or go to your bank (for an "
                       "account) or your mobile operator (for a phone number) with your identity card. Your "
                       "appeal goes to the authority that listed it. Being listed does not mean you are charged "
                       "with any offence.",
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
        "skip": "Skip to content",
        "nav_label": "Pages",
        "nav_check": "Check",
        "nav_appeal": "Appeal",
        "nav_status": "Appeal status",
        "appeal_link": "Appeal online",
        "appeal_title": "Appeal a listing",
        "appeal_intro": "If your phone number or bank account is listed by mistake (for example, scammers spoofed "
                        "your number, or your account was used without your knowledge), fill in this form. Your "
                        "appeal goes to the authority that listed it.",
        "appeal_kind_legend": "What is listed?",
        "appellant_label": "Who is appealing?",
        "appellant_person": "Myself (the number's or account's owner)",
        "appellant_bank": "A bank, on its customer's behalf",
        "appellant_telco": "A mobile operator, on its customer's behalf",
        "contact_legend": "How to reach you",
        "contact_hint": "Give an e-mail address or a phone number at least. Only the authorities reviewing your "
                        "appeal see them.",
        "name_label": "Full name",
        "email_label": "E-mail",
        "contact_phone_label": "Phone number to reach you at",
        "grounds_label": "Why is the listing wrong?",
        "grounds_hint": "Explain what happened. At most 4000 characters.",
        "evidence_label": "Evidence reference (optional)",
        "evidence_hint": "For example, a police report number or your bank's case number.",
        "appeal_submit": "Send the appeal",
        "appeal_privacy": "Your details are used for this appeal only and deleted after the set retention period.",
        "filed_heading": "Your appeal has been received",
        "filed_keep": "Keep this appeal id and token. The token is shown only once; you need both to check your "
                      "appeal's status.",
        "filed_next": "Check your appeal's status at any time:",
        "appeal_id_label": "Appeal id",
        "token_label": "Token",
        "acknowledge_by_label": "Acknowledged by",
        "decide_by_label": "Decided by",
        "refused_heading": "The appeal could not be sent",
        "refused_not_listed": "No authority has listed this number or account, so there is nothing to appeal. "
                              "Check the number or account you entered.",
        "refused_open": "There is already an open appeal on this number or account. Follow it with its appeal id "
                        "and token.",
        "refused_rejected": "An appeal on this number or account was rejected. You may appeal again from {date}.",
        "refused_busy": "An appeal on this number or account is being sent right now. Try again in a moment.",
        "too_many_appeals": "Too many appeals from your connection. Try again in {seconds} seconds.",
        "error_contact": "Give an e-mail address or a phone number to be reached at.",
        "error_name": "Enter your full name (at most 128 characters).",
        "error_email": "This is not a valid e-mail address. For example: name@example.my.",
        "error_contact_phone": "The phone number to reach you at is too long (at most 32 characters).",
        "error_grounds": "Explain why the listing is wrong (at most 4000 characters).",
        "error_evidence_ref": "The evidence reference is too long (at most 256 characters).",
        "status_title": "Appeal status",
        "status_intro": "Enter the appeal id and token you were given when you appealed.",
        "status_submit": "Check the status",
        "filed_at_label": "Sent on",
        "decided_at_label": "Decided on",
        "reappeal_label": "May appeal again from",
        "stage_received": "Received",
        "stage_received_body": "Your appeal has been received and is waiting for the authorities' review.",
        "stage_under_review": "Under review",
        "stage_under_review_body": "The authorities are reviewing your appeal. They may contact you.",
        "stage_upheld": "Upheld: the listing is withdrawn",
        "stage_upheld_body": "Your appeal was upheld. The number or account is no longer listed, and the banks and "
                             "mobile operators have been told to restore it.",
        "stage_rejected": "Rejected",
        "stage_rejected_body": "Your appeal was rejected; the listing stands. You may appeal again from the date "
                               "below, or call 997.",
        "error_appeal_id": "Enter the appeal id.",
        "error_token": "Enter the appeal's token.",
        "error_not_found": "No appeal has this id, or the token does not match it. Check both.",
        "help": "Scammed? Call 997 (National Scam Response Centre).",
    },
}
