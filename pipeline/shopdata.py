"""Data tables of the generated shop traffic: where visitors come from, what they buy.

Kept apart from the generator's logic in :mod:`pipeline.generate`, which uses them.
"""

from __future__ import annotations

from typing import Final

# Public IPv4 ranges by country: large, long-stable allocations of national
# ISPs and telecoms. Every address of every range was checked to geolocate to
# the listed country in the GeoLite2 City database of 2018 (the default one).
# The weight is the country's share of the shop's traffic (a European shop).
IPV4_RANGES: Final[dict[str, tuple[float, tuple[str, ...]]]] = {
    "DE": (14.0, ("79.192.0.0/10", "84.128.0.0/10", "80.132.0.0/14")),
    "FR": (12.0, ("86.192.0.0/11", "90.0.0.0/13", "90.16.0.0/13")),
    "US": (10.0, ("73.0.0.0/8", "24.0.0.0/12", "98.192.0.0/10")),
    "GB": (9.0, ("81.2.69.0/24", "86.160.0.0/11", "86.144.0.0/12")),
    "ES": (6.0, ("83.32.0.0/11", "88.0.0.0/11")),
    "IT": (6.0, ("79.0.0.0/10",)),
    "NL": (5.0, ("77.160.0.0/12",)),
    "BE": (3.0, ("81.240.0.0/14",)),
    "PL": (3.0, ("83.0.0.0/12", "83.24.0.0/13")),
    "SE": (2.0, ("81.224.0.0/12",)),
    "CH": (2.0, ("85.0.0.0/13",)),
    "AT": (2.0, ("80.120.0.0/15",)),
    "PT": (2.0, ("85.240.0.0/13",)),
    "CA": (2.0, ("70.28.0.0/14", "174.88.0.0/13")),
    "BR": (2.0, ("177.16.0.0/14", "187.4.0.0/14", "187.20.0.0/14")),
    "IE": (1.5, ("86.40.0.0/13",)),
    "DK": (1.5, ("87.48.0.0/12",)),
    "JP": (1.5, ("153.176.0.0/12",)),
    "IN": (1.5, ("117.192.0.0/10",)),
    "AU": (1.5, ("58.160.0.0/12", "120.144.0.0/13")),
    "NO": (1.2, ("84.208.0.0/13",)),
    "FI": (1.0, ("91.152.0.0/13",)),
    "CZ": (1.0, ("90.178.0.0/15", "90.180.0.0/14")),
    "RO": (1.0, ("86.120.0.0/13",)),
    "MX": (1.0, ("189.128.0.0/10",)),
    "KR": (1.0, ("121.128.0.0/10",)),
    "CN": (1.0, ("116.4.0.0/14", "116.8.0.0/15")),
    "TR": (1.0, ("88.224.0.0/11",)),
    "RU": (1.0, ("95.24.0.0/13",)),
    "HU": (0.8, ("84.0.0.0/16", "84.3.0.0/16")),
    "GR": (0.8, ("79.130.0.0/15",)),
    "AR": (0.5, ("181.0.0.0/13",)),
    "CO": (0.5, ("181.48.0.0/13",)),
    "TW": (0.5, ("114.32.0.0/12",)),
    "ID": (0.5, ("36.64.0.0/11",)),
    "IL": (0.5, ("79.176.0.0/14",)),
    "ZA": (0.5, ("105.0.0.0/13",)),
    "UA": (0.5, ("93.73.0.0/16", "93.74.0.0/16")),
    "NZ": (0.4, ("122.56.0.0/14",)),
    "SG": (0.4, ("116.86.0.0/15",)),
    "VN": (0.4, ("113.160.0.0/11",)),
    "PH": (0.4, ("112.198.0.0/16",)),
    "EG": (0.4, ("41.32.0.0/12",)),
    "MA": (0.4, ("105.128.0.0/11",)),
    "SA": (0.4, ("188.48.0.0/13",)),
    "AE": (0.4, ("94.200.0.0/13",)),
    "NG": (0.3, ("105.112.0.0/12",)),
    "PK": (0.3, ("39.32.0.0/11",)),
}
#: Public IPv6 ranges of large ISPs, checked the same way.
IPV6_RANGES: Final[dict[str, tuple[str, ...]]] = {
    "DE": ("2003::/19",),
    "FR": ("2a01:c900::/24",),
    "GB": ("2a00:23c0::/32", "2a00:23c4::/32"),
    "US": ("2601:700::/24", "2601:800::/24"),
    "JP": ("2400:4040::/26",),
}
#: Private ranges: no geo, and not an error.
PRIVATE_RANGES: Final[tuple[str, ...]] = ("10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12")
IPV6_SHARE: Final = 0.03
PRIVATE_SHARE: Final = 0.01

#: Used when the full corpus of ``pipeline.enrich.browser`` cannot be loaded.
FALLBACK_USER_AGENTS: Final[tuple[str, ...]] = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
BOT_MARKERS: Final = ("bot", "spider", "crawl", "slurp", "headless")

#: (name, price in EUR, category); earlier items are bought more often.
CATALOG: Final[tuple[tuple[str, float, str], ...]] = (
    ("tomato", 2.49, "vegetables"), ("strawberries", 3.99, "fruit"), ("bananas", 1.79, "fruit"),
    ("milk", 1.15, "dairy"), ("bread", 2.20, "bakery"), ("eggs", 2.99, "dairy"),
    ("avocado", 1.49, "fruit"), ("coffee beans", 8.90, "pantry"), ("olive oil", 7.49, "pantry"),
    ("pasta", 1.29, "pantry"), ("apples", 2.79, "fruit"), ("cheddar", 3.59, "dairy"),
    ("chicken breast", 6.99, "meat"), ("rice", 2.15, "pantry"), ("yogurt", 0.89, "dairy"),
    ("butter", 2.39, "dairy"), ("orange juice", 2.99, "drinks"), ("sparkling water", 0.69, "drinks"),
    ("dark chocolate", 2.49, "sweets"), ("croissant", 1.10, "bakery"), ("salmon fillet", 9.99, "fish"),
    ("spinach", 1.99, "vegetables"), ("carrots", 1.19, "vegetables"), ("potatoes", 2.59, "vegetables"),
    ("onions", 1.39, "vegetables"), ("garlic", 0.99, "vegetables"), ("lemons", 1.89, "fruit"),
    ("blueberries", 3.49, "fruit"), ("granola", 4.29, "pantry"), ("honey", 5.49, "pantry"),
    ("green tea", 3.79, "drinks"), ("red wine", 11.90, "drinks"), ("crème fraîche", 1.69, "dairy"),
    ("mozzarella", 1.99, "dairy"), ("basil", 1.49, "vegetables"), ("tofu", 2.29, "vegetables"),
    ("oat milk", 2.19, "drinks"), ("paper towels", 4.99, "household"), ("dish soap", 2.89, "household"),
    ("coffee mug", 12.50, "kitchen"),
)  # fmt: skip
CATEGORIES: Final = tuple(sorted({c for _, _, c in CATALOG}))
#: Queries users type; some with spaces, accents and typos, some with no results.
QUERIES: Final = (
    "tomato", "milk", "organic eggs", "coffee", "strawberries", "gluten free bread", "oat milk",
    "crème fraîche", "wine", "chocolate", "salmon", "vegan", "bananas", "olive oil", "tomatos",
    "baby food", "pasta sauce", "frozen pizza", "ice cream", "tea", "honey", "avocado",
    "cat food", "birthday candles", "kombucha", "sriracha", "rice 5kg", "mugs", "detergent", "🍓",
)  # fmt: skip
#: Action names and weights: the three the rollups use, plus "view-like" ones.
ACTIONS: Final = (
    ("search", 28.0), ("add_to_cart", 27.0), ("checkout", 12.0), ("wishlist_add", 8.0),
    ("filter_applied", 8.0), ("login", 5.0), ("newsletter_signup", 4.0), ("coupon_applied", 4.0),
    ("share_product", 4.0),
)  # fmt: skip
EXTERNAL_REFERRERS: Final = (
    "https://www.google.com/", "", "https://www.facebook.com/", "https://www.bing.com/",
    "https://duckduckgo.com/", "https://t.co/", "https://news.example/weekly",
)  # fmt: skip
UTM: Final = (
    "utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale",
    "utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=groceries",
    "utm_source=facebook&utm_medium=social&utm_campaign=summer_fruit",
    "utm_source=partner&utm_medium=affiliate",
)
