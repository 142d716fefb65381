"""Reverse-geocoding accuracy (issue 26) on known places: cities on every continent, both
hemispheres, landmarks inside big cities (districts must resolve to the city), places near
borders, and points at sea (which must get no place). Prints country and city-or-region
accuracy and the time per lookup (a busy machine's figure: re-measure idle).

    virtualenvs/autotag/bin/python bench/geocode_accuracy.py [--misses]
"""

from __future__ import annotations

import argparse
import time

from autotag.vision.places import geocoder

SEA = None
# (lat, lon, country code or SEA, accepted city/region names (lower-case))
KNOWN: list[tuple[float, float, str | None, tuple[str, ...]]] = [
    # Europe
    (52.5163, 13.3777, "DE", ("berlin",)),  # Brandenburg Gate
    (52.5200, 13.4050, "DE", ("berlin",)),
    (48.1374, 11.5755, "DE", ("munich", "münchen")),
    (50.9375, 6.9603, "DE", ("cologne", "köln")),
    (53.5511, 9.9937, "DE", ("hamburg",)),
    (48.8584, 2.2945, "FR", ("paris",)),  # Eiffel Tower
    (48.8606, 2.3376, "FR", ("paris",)),  # Louvre
    (43.2965, 5.3698, "FR", ("marseille",)),
    (45.7640, 4.8357, "FR", ("lyon",)),
    (51.5007, -0.1246, "GB", ("london",)),  # Big Ben
    (51.5081, -0.0759, "GB", ("london",)),  # Tower of London
    (55.9533, -3.1883, "GB", ("edinburgh",)),
    (53.4808, -2.2426, "GB", ("manchester",)),
    (41.9029, 12.4534, "VA", ("vatican city", "vatican")),
    (41.8902, 12.4922, "IT", ("rome", "roma")),  # Colosseum
    (45.4642, 9.1900, "IT", ("milan", "milano")),
    (43.7696, 11.2558, "IT", ("florence", "firenze")),
    (40.4168, -3.7038, "ES", ("madrid",)),
    (41.4036, 2.1744, "ES", ("barcelona",)),  # Sagrada Familia
    (38.7223, -9.1393, "PT", ("lisbon", "lisboa")),
    (52.3676, 4.9041, "NL", ("amsterdam",)),
    (50.8467, 4.3525, "BE", ("brussels", "bruxelles")),
    (48.2082, 16.3738, "AT", ("vienna", "wien")),
    (47.3769, 8.5417, "CH", ("zurich", "zürich")),
    (46.2044, 6.1432, "CH", ("geneva", "genève")),
    (50.0755, 14.4378, "CZ", ("prague", "praha")),
    (52.2297, 21.0122, "PL", ("warsaw", "warszawa")),
    (47.4979, 19.0402, "HU", ("budapest",)),
    (59.3293, 18.0686, "SE", ("stockholm",)),
    (59.9139, 10.7522, "NO", ("oslo",)),
    (55.6761, 12.5683, "DK", ("copenhagen", "københavn")),
    (60.1699, 24.9384, "FI", ("helsinki",)),
    (64.1466, -21.9426, "IS", ("reykjavík", "reykjavik")),
    (53.3498, -6.2603, "IE", ("dublin",)),
    (37.9715, 23.7257, "GR", ("athens", "athína")),  # Acropolis
    (41.0082, 28.9784, "TR", ("istanbul", "i̇stanbul")),
    (55.7539, 37.6208, "RU", ("moscow", "moskva")),  # Red Square
    (59.9343, 30.3351, "RU", ("saint petersburg", "sankt-peterburg")),
    (50.4501, 30.5234, "UA", ("kyiv", "kiev")),
    (44.4268, 26.1025, "RO", ("bucharest", "bucureşti", "bucurești")),
    # near borders
    (47.5596, 7.5886, "CH", ("basel",)),
    (47.5900, 7.5500, "FR", ("saint-louis", "haut-rhin", "grand est")),
    (47.5790, 7.6120, "DE", ("weil am rhein", "baden-wurttemberg", "baden-württemberg")),
    (32.5149, -117.0382, "MX", ("tijuana",)),
    (32.7157, -117.1611, "US", ("san diego",)),
    (31.7619, -106.4850, "US", ("el paso",)),
    (31.6904, -106.4245, "MX", ("ciudad juárez", "juárez")),
    (42.3314, -83.0458, "US", ("detroit",)),
    (42.3149, -83.0364, "CA", ("windsor",)),
    (49.0068, 8.4037, "DE", ("karlsruhe",)),
    (48.5734, 7.7521, "FR", ("strasbourg",)),
    (51.4416, 5.4697, "NL", ("eindhoven",)),
    (-34.6037, -58.3816, "AR", ("buenos aires",)),
    (-34.9011, -56.1645, "UY", ("montevideo",)),
    (1.3521, 103.8198, "SG", ("singapore",)),
    (1.4927, 103.7414, "MY", ("johor bahru",)),
    # North America
    (40.7580, -73.9855, "US", ("new york city", "new york")),  # Times Square
    (40.6892, -74.0445, "US", ("new york city", "new york")),  # Statue of Liberty
    (40.6782, -73.9442, "US", ("new york city", "new york", "brooklyn")),
    (37.8199, -122.4783, "US", ("san francisco",)),  # Golden Gate Bridge
    (37.7749, -122.4194, "US", ("san francisco",)),
    (34.1341, -118.3215, "US", ("los angeles",)),  # Hollywood sign
    (41.8781, -87.6298, "US", ("chicago",)),
    (47.6062, -122.3321, "US", ("seattle",)),
    (25.7617, -80.1918, "US", ("miami",)),
    (38.8977, -77.0365, "US", ("washington",)),  # White House
    (29.7604, -95.3698, "US", ("houston",)),
    (36.1699, -115.1398, "US", ("las vegas",)),
    (21.3069, -157.8583, "US", ("honolulu",)),
    (61.2181, -149.9003, "US", ("anchorage",)),
    (43.6532, -79.3832, "CA", ("toronto",)),
    (45.5017, -73.5673, "CA", ("montreal", "montréal")),
    (49.2827, -123.1207, "CA", ("vancouver",)),
    (19.4326, -99.1332, "MX", ("mexico city", "ciudad de méxico")),
    (20.6597, -103.3496, "MX", ("guadalajara",)),
    (23.1136, -82.3666, "CU", ("havana", "la habana")),
    (9.9281, -84.0907, "CR", ("san josé", "san jose")),
    # South America
    (-22.9519, -43.2105, "BR", ("rio de janeiro",)),  # Christ the Redeemer
    (-23.5505, -46.6333, "BR", ("são paulo", "sao paulo")),
    (-15.7939, -47.8828, "BR", ("brasília", "brasilia")),
    (-12.0464, -77.0428, "PE", ("lima",)),
    (-13.1631, -72.5450, "PE", ("cusco", "machupicchu", "aguas calientes")),  # Machu Picchu
    (-33.4489, -70.6693, "CL", ("santiago",)),
    (4.7110, -74.0721, "CO", ("bogotá", "bogota")),
    (-0.1807, -78.4678, "EC", ("quito",)),
    (10.4806, -66.9036, "VE", ("caracas",)),
    (-16.4897, -68.1193, "BO", ("la paz",)),
    (-54.8019, -68.3030, "AR", ("ushuaia",)),
    # Africa
    (-33.9249, 18.4241, "ZA", ("cape town",)),
    (-26.2041, 28.0473, "ZA", ("johannesburg",)),
    (30.0444, 31.2357, "EG", ("cairo",)),
    (29.9792, 31.1342, "EG", ("giza", "al jīzah", "cairo")),  # Pyramids
    (6.5244, 3.3792, "NG", ("lagos",)),
    (-1.2921, 36.8219, "KE", ("nairobi",)),
    (9.0300, 38.7400, "ET", ("addis ababa",)),
    (33.5731, -7.5898, "MA", ("casablanca",)),
    (31.6295, -7.9811, "MA", ("marrakesh", "marrakech")),
    (14.7167, -17.4677, "SN", ("dakar",)),
    (-6.7924, 39.2083, "TZ", ("dar es salaam",)),
    (-4.4419, 15.2663, "CD", ("kinshasa",)),
    (-18.8792, 47.5079, "MG", ("antananarivo",)),
    (-17.9243, 25.8572, "ZM", ("livingstone",)),  # near Victoria Falls, the Zambian side
    (36.8065, 10.1815, "TN", ("tunis",)),
    # Asia
    (35.6586, 139.7454, "JP", ("tokyo",)),  # Tokyo Tower
    (35.7148, 139.7967, "JP", ("tokyo",)),  # Senso-ji
    (34.9671, 135.7727, "JP", ("kyoto",)),  # Fushimi Inari
    (34.6937, 135.5023, "JP", ("osaka",)),
    (37.5665, 126.9780, "KR", ("seoul",)),
    (39.9163, 116.3972, "CN", ("beijing",)),  # Forbidden City
    (31.2304, 121.4737, "CN", ("shanghai",)),
    (22.3193, 114.1694, "HK", ("hong kong", "kowloon")),
    (25.0330, 121.5654, "TW", ("taipei",)),
    (13.7563, 100.5018, "TH", ("bangkok",)),
    (21.0278, 105.8342, "VN", ("hanoi", "ha noi")),
    (10.8231, 106.6297, "VN", ("ho chi minh city",)),
    (-6.2088, 106.8456, "ID", ("jakarta",)),
    (-8.4095, 115.1889, "ID", ("bali",)),
    (14.5995, 120.9842, "PH", ("manila",)),
    (28.6139, 77.2090, "IN", ("new delhi", "delhi")),
    (27.1751, 78.0421, "IN", ("agra",)),  # Taj Mahal
    (19.0760, 72.8777, "IN", ("mumbai",)),
    (12.9716, 77.5946, "IN", ("bengaluru", "bangalore")),
    (27.7172, 85.3240, "NP", ("kathmandu",)),
    (25.1972, 55.2744, "AE", ("dubai",)),  # Burj Khalifa
    (24.7136, 46.6753, "SA", ("riyadh",)),
    (31.7767, 35.2345, "IL", ("jerusalem",)),
    (35.6892, 51.3890, "IR", ("tehran",)),
    (41.2995, 69.2401, "UZ", ("tashkent",)),
    (43.2220, 76.8512, "KZ", ("almaty",)),
    # Oceania
    (-33.8568, 151.2153, "AU", ("sydney",)),  # Opera House
    (-37.8136, 144.9631, "AU", ("melbourne",)),
    (-27.4698, 153.0251, "AU", ("brisbane",)),
    (-31.9505, 115.8605, "AU", ("perth",)),
    (-12.4634, 130.8456, "AU", ("darwin",)),
    (-36.8485, 174.7633, "NZ", ("auckland",)),
    (-41.2865, 174.7762, "NZ", ("wellington",)),
    (-45.0312, 168.6626, "NZ", ("queenstown",)),
    (-17.7134, 178.0650, "FJ", ("suva", "central", "nausori")),
    (-18.1416, 178.4419, "FJ", ("suva",)),
    # at sea: no place at all
    (0.0, -30.0, SEA, ()),
    (40.0, -40.0, SEA, ()),
    (-40.0, 100.0, SEA, ()),
    (20.0, -150.0, SEA, ()),
    (55.0, 3.0, SEA, ()),
    (-60.0, -30.0, SEA, ()),
    (35.0, 18.0, SEA, ()),
    (10.0, 65.0, SEA, ()),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--misses", action="store_true", help="print each miss")
    args = ap.parse_args()
    t0 = time.perf_counter()
    geo = geocoder()
    load = time.perf_counter() - t0
    country_ok = city_ok = 0
    times = []
    misses = []
    for lat, lon, code, names in KNOWN:
        t = time.perf_counter()
        place = geo.locate(lat, lon)
        times.append(time.perf_counter() - t)
        if code is SEA:
            ok_country = ok_city = place.country_code is None
        else:
            ok_country = place.country_code == code
            got = {(place.city or "").lower(), (place.region or "").lower()}
            ok_city = bool(got & set(names))
        country_ok += ok_country
        city_ok += ok_city
        if not (ok_country and ok_city):
            misses.append(
                f"  ({lat}, {lon}) want {code} {names}: got {place.label()} [{place.country_code}]"
            )
    n = len(KNOWN)
    times.sort()
    print(f"places          {n} ({sum(1 for k in KNOWN if k[2] is SEA)} at sea)")
    print(f"country right   {country_ok}/{n} = {100 * country_ok / n:.1f}%  (goal >= 98%)")
    print(f"city or region  {city_ok}/{n} = {100 * city_ok / n:.1f}%  (goal >= 90%)")
    print(
        f"time per lookup median {1000 * times[n // 2]:.2f} ms, p95 {1000 * times[int(n * 0.95)]:.2f} ms;"
        f" load {load:.2f} s (busy machine: re-measure idle)"
    )
    if args.misses or misses:
        print("misses" if misses else "no misses")
        print("\n".join(misses))


if __name__ == "__main__":
    main()
