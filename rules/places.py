"""Where a roaming subscriber is: country names for texts (a notice says
"France", never "FR") and the local time used for quiet hours abroad, from
the event's ISO 3166-1 alpha-2 `roaming_country`. The table covers the
destinations travellers from the home market visit most; a country not in
it is named by its code in texts and its quiet hours follow the profile's
timezone (an event's own `timezone` still wins)."""

from __future__ import annotations

from typing import NamedTuple


class Country(NamedTuple):
    en: str
    zh_cn: str
    timezone: str  # the capital's, for quiet hours


COUNTRIES: dict[str, Country] = {
    "AE": Country("the United Arab Emirates", "阿联酋", "Asia/Dubai"),
    "AR": Country("Argentina", "阿根廷", "America/Argentina/Buenos_Aires"),
    "AT": Country("Austria", "奥地利", "Europe/Vienna"),
    "AU": Country("Australia", "澳大利亚", "Australia/Sydney"),
    "BE": Country("Belgium", "比利时", "Europe/Brussels"),
    "BR": Country("Brazil", "巴西", "America/Sao_Paulo"),
    "CA": Country("Canada", "加拿大", "America/Toronto"),
    "CH": Country("Switzerland", "瑞士", "Europe/Zurich"),
    "CZ": Country("the Czech Republic", "捷克", "Europe/Prague"),
    "DE": Country("Germany", "德国", "Europe/Berlin"),
    "DK": Country("Denmark", "丹麦", "Europe/Copenhagen"),
    "EG": Country("Egypt", "埃及", "Africa/Cairo"),
    "ES": Country("Spain", "西班牙", "Europe/Madrid"),
    "FI": Country("Finland", "芬兰", "Europe/Helsinki"),
    "FR": Country("France", "法国", "Europe/Paris"),
    "GB": Country("the United Kingdom", "英国", "Europe/London"),
    "GR": Country("Greece", "希腊", "Europe/Athens"),
    "HK": Country("Hong Kong, China", "中国香港", "Asia/Hong_Kong"),
    "ID": Country("Indonesia", "印度尼西亚", "Asia/Jakarta"),
    "IN": Country("India", "印度", "Asia/Kolkata"),
    "IT": Country("Italy", "意大利", "Europe/Rome"),
    "JP": Country("Japan", "日本", "Asia/Tokyo"),
    "KH": Country("Cambodia", "柬埔寨", "Asia/Phnom_Penh"),
    "KR": Country("South Korea", "韩国", "Asia/Seoul"),
    "KZ": Country("Kazakhstan", "哈萨克斯坦", "Asia/Almaty"),
    "LA": Country("Laos", "老挝", "Asia/Vientiane"),
    "MN": Country("Mongolia", "蒙古", "Asia/Ulaanbaatar"),
    "MO": Country("Macao, China", "中国澳门", "Asia/Macau"),
    "MV": Country("the Maldives", "马尔代夫", "Indian/Maldives"),
    "MX": Country("Mexico", "墨西哥", "America/Mexico_City"),
    "MY": Country("Malaysia", "马来西亚", "Asia/Kuala_Lumpur"),
    "NL": Country("the Netherlands", "荷兰", "Europe/Amsterdam"),
    "NO": Country("Norway", "挪威", "Europe/Oslo"),
    "NZ": Country("New Zealand", "新西兰", "Pacific/Auckland"),
    "PH": Country("the Philippines", "菲律宾", "Asia/Manila"),
    "PT": Country("Portugal", "葡萄牙", "Europe/Lisbon"),
    "RU": Country("Russia", "俄罗斯", "Europe/Moscow"),
    "SA": Country("Saudi Arabia", "沙特阿拉伯", "Asia/Riyadh"),
    "SE": Country("Sweden", "瑞典", "Europe/Stockholm"),
    "SG": Country("Singapore", "新加坡", "Asia/Singapore"),
    "TH": Country("Thailand", "泰国", "Asia/Bangkok"),
    "TR": Country("Turkey", "土耳其", "Europe/Istanbul"),
    "TW": Country("Taiwan, China", "中国台湾", "Asia/Taipei"),
    "US": Country("the United States", "美国", "America/New_York"),
    "VN": Country("Vietnam", "越南", "Asia/Ho_Chi_Minh"),
    "ZA": Country("South Africa", "南非", "Africa/Johannesburg"),
}


def country_name(code: object, language: str = "en") -> str:
    """The country's name in `language` ("en" or "zh-CN"), or the code."""
    country = COUNTRIES.get(str(code)) if code is not None else None
    if country is None:
        return str(code)
    return country.zh_cn if language == "zh-CN" else country.en


def local_timezone(code: str | None) -> str | None:
    """The timezone used for quiet hours in a roaming country, if known."""
    country = COUNTRIES.get(code) if code else None
    return country.timezone if country else None
