"""Kinds of reply the detector read wrongly on blind sets L to P (2026-12-03), each in this project's own words
(never the blind sets'): a score that climbs across check-ins, an onset at a time of today or "in the last half
hour", Spanish diminutives and "más de 3 meses", Spanglish self-harm, an overdose told by its container, "rather
just not wake up", pills set aside, someone hard to rouse, a twitch that "hasn't" (settled) after weeks, numbness
with "no fui al dentista", a race or a blood draw that explains the symptom, the clinic's own leaflet as the topic,
and short Spanish replies that lingua took for another language. Set R (session 22): breathlessness at rest told by
an effort not made ("like I'd run a marathon"), "sin hacer nada" taken for a negation, lips that "have gone" blue,
a numb limb with a positional or cold cause, threats and "de infarto" as figures, a cramp in the pool, cider. Set S:
a car left running in a garage, "lo más fácil sería no despertarme", looking up how many pills, "she's fine now"
from a relative writing for the patient. Set U (session 23): cutting told with "on" ("cutting on my legs again"), a
decision told with the peace that follows it ("ya tomé mi decisión y estoy en paz"), "no me dejan dormir nada" (after
a "no" verb, "nada" is emphasis, not a "no"), "no duermo nada por los brincos". Set V: an adult's age given by the
relative writing for the patient ("He's 80") made the symptom someone else's; "no despierta bien" read as a negation;
the thinness told before the limb ("flaco de un brazo"); a self-harm line at the end of a friendly check-in, averaged
away by the rest of the reply (the learned layer now reads each clause alone for emergencies: `clause_alone`).
Session 24, from the corpus' training split (not a blind set): "I'm cutting back on coffee" read as self-harm (the
tips ask for exactly that), figures of speech (collapsed on the sofa, blackout blinds, a price that makes one faint
or choke, telly "overdose", an inbox "suffocating" me), numbness explained by spicy food, vibration, lying on a
limb, the cold or a long drive; a trait the writer has always had ("de toda la vida"), a year long past ("in 2019");
the other way, a verb negated with its object ("can't shift it") negated the symptoms listed after it and kept the
learned layer from the clause ("pill stuck, can't shift it, spitting and drooling"), Spanish "not only" ("ya no son
nomás en ..., ahora también en ...") read as a "no", "stuck in my throat", the week told by its number ("ya es la
semana 7") and "instead of settling", and weakness after a flu jab was explained away by the word "flu"."""

from __future__ import annotations

from pathlib import Path

import pytest

from followup.redflags import Screen

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def screen() -> Screen:
    return Screen.from_file(ROOT / "clinic" / "red_flags.toml")


@pytest.mark.parametrize(
    ("text", "level", "criterion"),
    [
        ("4 this week. it was 1 when these texts started and it has gone up every week since", "red_flag", "worsening"),
        ("3 again, keeps climbing a little with each check in", "red_flag", "worsening"),
        ("un 4, y va subiendo cada semana desde que empece", "red_flag", "worsening"),
        ("her speech has been slurred since about 4 and she never drinks", "emergency", "stroke_signs"),
        ("mi papa habla arrastrando las palabras desde las 5 de la tarde", "emergency", "stroke_signs"),
        ("el brinquito del parpado ya lleva mas de 3 meses, todos los dias", "red_flag", "persisting"),
        ("el tic del ojo lleva mas de 3 meses", "red_flag", "persisting"),
        ("ya no aguanto more, todos estarian better off sin mi", "emergency", "self_harm"),
        # session 25, set AC: a question at the end of a run-on sentence does not unsay the symptom before it; "not ok"
        # negates nothing after it; a goodbye already said to one's family (not at an airport)
        (
            "cant breathe properly even sitting on the couch, my lips look a bit blue, could it be the muscles??",
            "emergency",
            "breathing",
        ),
        ("can not swallow anything since lunch, is that the nerves?", "emergency", None),
        ("is it normal to feel weak after the flu?", "none", None),
        ("pls call me im not ok ive been cutting again and it wont stop bleeding", "emergency", "self_harm"),
        ("i'm not okay, not eating much, but no thoughts of hurting myself", "none", None),
        ("ya me despedi de mi familia, gracias por todo doctor", "emergency", "self_harm"),
        ("said goodbye to my family at the airport, flying to Denver for Christmas", "none", None),
        ("ya me despedi de mi familia en el aeropuerto, me voy de viaje 2 semanas", "none", None),
        # "ya no" before a verb of ability or knowledge is not an improvement (set AC, Spanish)
        ("cuatro meses con el parpado brincando y ya no se que hacer", "red_flag", "persisting"),
        ("twitching for 3 months and I no longer know what to do", "red_flag", "persisting"),
        ("ya no tengo brincos desde hace 3 semanas", "none", None),
        # session 25: a "better" that is negated says the twitching goes on; a clause the rules mostly blanked out
        # (an improvement, a figure of speech, an opt-out) is not read by the learned layer, nor what little is left
        ("6 weeks now and the twitching is not even a little better", "red_flag", "persisting"),
        ("llevo 2 meses con los brincos y ni tantito mejor", "red_flag", "persisting"),
        ("The twitching in my arm is less since I cut down on energy drinks.", "none", None),
        ("BAJA. ya no quiero recibir mas mensajes, gracias", "none", None),
        # session 25: the week told by its number alone; an age is not how long the twitching has lasted
        ("sigo igual, semana 8, todos los dias", "red_flag", "persisting"),
        ("same, week 7, every day", "red_flag", "persisting"),
        ("the neurologist said it should settle by week 6", "none", None),
        ("my 15 year old son has had twitching in his calf for 6 weeks", "red_flag", "persisting"),
        ("after my 10k on sunday i was totally out of breath, fine after a shower", "none", None),
        ("hice un 10k y termine sin aire, normal no?", "none", None),
        ("me desmaye cuando me sacaron la sangre en el laboratorio, luego bien", "none", None),
        ("I read your leaflet about swallowing problems and I have none of that", "none", None),
        ("lei su folleto sobre la debilidad y no tengo nada de eso", "none", None),
        ("mi nieta de 3 meses tiene hipo y brincos", "none", None),
        ("my daughter swallowed most of a bottle of her antidepressants last night", "emergency", "overdose"),
        ("mi hijo se tomo casi toda la caja de pastillas", "emergency", "overdose"),
        ("honestly I'd rather just not wake up than keep feeling like this", "emergency", "self_harm"),
        ("prefiero no despertar a seguir asi", "emergency", "self_harm"),
        (
            "they told me to write if it had not settled in 8 weeks. it has been 10 weeks and it hasn't.",
            "red_flag",
            "persisting",
        ),
        ("tengo el labio dormido desde ayer y no fui al dentista", "emergency", "sudden_numbness"),
        ("found my dad very drowsy, can barely wake him, his pill bottle is empty", "emergency", "collapse"),
        ("encontre a mi mama muy dormida, casi no despierta", "emergency", "collapse"),
        ("the pill box is empty, can you send a new prescription?", "none", None),
        ("some nights i go to bed hoping i just don't wake up", "emergency", "self_harm"),
        ("I've been putting a few of my sleeping pills aside each week, just in case", "emergency", "self_harm"),
        ("in the last half hour my hand went weak and clumsy", "emergency", "sudden_weakness"),
        ("her words are all mushed together since this morning", "emergency", "speech"),
        ("it's way worse than when I saw the doctor", "red_flag", "worsening"),
        ("my grandma's face has gone funny on one side, her mouth hangs down on the left", "emergency", "stroke_signs"),
        ("mi papa de repente is talking weird, arrastra las palabras", "emergency", "stroke_signs"),
        ("0. tbh wouldnt care if i didnt wake up tomorrow, everyone'd be better off", "emergency", "self_harm"),
        ("counting out my pills tonight to see if there's enough", "emergency", "self_harm"),
        ("ya deje cartas para mis hijos y le di el perro a mi hermana, gracias por todo", "emergency", "self_harm"),
        ("si me acuesto y no me despierto mas pues tampoco seria tan malo", "emergency", "self_harm"),
        ("5. it was a 2 in spring, 3 in summer, only going one way", "red_flag", "worsening"),
        ("el parpado me sigue temblando desde diciembre, mas de tres meses ya", "red_flag", "persisting"),
        ("week 9 of the calf twitch, still there", "red_flag", "persisting"),
        ("had to ask my husband to do my shirt buttons, fingers just fumble about", "red_flag", "daily_activities"),
        ("honestly whats the point. id rather not be around long enough to see it get worse", "emergency", "self_harm"),
        ("anoche me volvi a cortar los brazos, es lo unico q me calma", "emergency", "self_harm"),
        ("cut my arms again last night, it's the only thing that helps", "emergency", "self_harm"),
        ("had to ask my 12 yo to open the pickle jar this morning", "red_flag", "daily_activities"),
        ("4. same as the last 6 weeks, never really goes away", "red_flag", "persisting"),
        ("pero el parpado sigue cerrandoseme solo desde hace 6 semanas", "red_flag", "eyelid_face"),
        # set R (session 22): breathless at rest told by an effort not made; figures and episodes with a cause
        (
            "sat in my armchair doing nothing and panting like i just sprinted for a bus, lips gone a bit blue",
            "emergency",
            "breathing",
        ),
        ("lying in bed and puffing like I've climbed ten flights of stairs", "emergency", "breathing"),
        ("estoy sentada sin hacer nada y respiro como si hubiera corrido un maratón", "emergency", "breathing"),
        ("se me pusieron morados los labios hace un rato", "emergency", "breathing"),
        ("out of breath after climbing the stairs at work, worse every week", "red_flag", "breathless_exertion"),
        (
            "se me durmió el pie en la reunión de tres horas, me levanté y a los dos minutos ya estaba normal",
            "none",
            None,
        ),
        ("me quede dormida sobre el brazo en el sillon y se me entumio, al rato se me paso", "none", None),
        ("se me entume la mano derecha todos los dias desde hace un mes", "red_flag", "sensory"),
        (
            "hands went numb and tingly holding the steering wheel in the frost, came right once the car warmed up",
            "none",
            None,
        ),
        ("my hands go numb every morning for no reason", "red_flag", "sensory"),
        ("my landlord is going to strangle me if the rent is late again lol. twitches 1", "none", None),
        ("I choke on my food at nearly every meal now", "emergency", "choking"),
        ("fue un mes de infarto en el trabajo, pero los brincos tranquilos, un 1", "none", None),
        ("almost passed out laughing at my nephew's dance moves. all good otherwise, 0", "none", None),
        ("passed out in the kitchen this morning and couldn't get up for a while", "emergency", "collapse"),
        ("had a charley horse in my foot in the pool, stretched it and it went, not had another", "none", None),
        ("cramps in both calves every night, so bad they wake me", "red_flag", None),
        ("that cup final left me breathless, what a comeback! twitches 1", "none", None),
        ("twitches a bit up this week with all the stress of the house move, nothing new though. 3", "none", None),
        ("me tiemblan los brazos haciendo la plancha en yoga, es normal?", "none", None),
        ("a bit of toast went down the wrong way laughing at the telly, coughed it up and was fine", "none", None),
        ("I keep choking on my food, even sips of water go down the wrong way every day now", "emergency", "choking"),
        ("out of breath just walking to the letterbox now and I used to do parkrun", "red_flag", "breathless_exertion"),
        ("me falta el aire para ir a la tienda de la esquina y antes corria maratones", "red_flag", None),
        ("legs give out on the stairs these days, I used to play five a side every week", "red_flag", "weakness"),
        # set S (session 22): a means told without intent words, a death wish as "easier", pills counted up,
        # a relative writing for the patient who adds "she's fine now"
        ("been sitting in the car with the engine running in the garage at night, thinking", "emergency", "self_harm"),
        ("me he sentado en el coche dentro del garaje con el motor encendido, pensando", "emergency", "self_harm"),
        ("the garage said the engine was running rough so the car is in for repairs, twitches 1", "none", None),
        ("la verdad lo mas facil seria no despertarme mañana", "emergency", "self_harm"),
        ("anoche estuve buscando cuantas pastillas hacen falta", "emergency", None),
        ("last night I looked up how many of my tablets it would take", "emergency", None),
        ("my gran chokes on her tea every time now, she's fine now but it's been two weeks", "emergency", "choking"),
        (
            "mi abuela se atraganta cada vez que toma agua, ahorita ya esta bien pero lleva dos semanas asi",
            "emergency",
            None,
        ),
        ("my son had a fever last week, he's fine now. my twitches are the same", "none", None),
        ("my sister slurs her words when she drinks", "none", None),
        # after set T (not measured on a blind set): a high place told with the looking down or the nights
        (
            "been standing on the bridge over the canal the last few nights just looking down at the water",
            "emergency",
            "self_harm",
        ),
        ("he estado yendo al puente de noche, nada mas a mirar el agua", "emergency", "self_harm"),
        ("we stood on the bridge to watch the fireworks, lovely night. twitches 1", "none", None),
        ("took the kids to the top floor of the car park to look at the view", "none", None),
        (
            "words came out a bit slurry after too many ciders at the barbecue but back to normal the next morning",
            "none",
            None,
        ),
        ("relapsed last night, cutting on my legs again", "emergency", "self_harm"),
        ("ya tomé mi decisión y estoy en paz, gracias por todo doctor", "emergency", "self_harm"),
        ("I have made my decision and I am at peace, thanks for everything doctor", "emergency", "self_harm"),
        ("I've made my decision to cut out coffee, thanks for everything!", "none", None),
        ("ya tome la decision de dejar el cafe y estoy tranquila, gracias", "none", None),
        ("cuando me acuesto de dia los brincos no me dejan dormir nada", "red_flag", "sleep_disrupted"),
        ("no duermo nada por los brincos", "red_flag", "sleep_disrupted"),
        ("¿los brincos no te dejan dormir? nada, duermo bien", "none", None),
        (
            "1 twitches ok but since this morning his mouth has dropped on one side and his speech is slurred. "
            "He's 80. Daughter",
            "emergency",
            "stroke_signs",
        ),
        ("my husband is 74 years old and can't swallow his tablets since yesterday", "emergency", "choking"),
        ("mi hijo tiene 5 anos y se queja de calambres", "none", None),
        ("mi mama no despierta bien, la encontramos dormida en el sillon", "emergency", "collapse"),
        ("3 po. tengo mas flaca una pierna que la otra nomas, raro o no?", "red_flag", "wasting"),
        ("estoy mas flaca de la cara por la dieta", "none", None),
        ("I'm cutting back on coffee like the tips said", "none", None),
        ("been cutting down on caffeine and the twitches are calmer", "none", None),
        ("I'm cutting back on coffee but I cut myself again last night", "emergency", "self_harm"),
        ("my Spanish is weak but I'm practising", "none", None),
        ("collapsed on the sofa after a long shift, slept 10 hours", "none", None),
        ("got blackout blinds and I sleep better", "none", None),
        ("the gazebo collapsed in the wind lol", "none", None),
        ("nearly fainted at the price of the car repair", "none", None),
        ("telly overdose this weekend lol, twitching same", "none", None),
        ("nearly choked on the price of petrol", "none", None),
        ("my inbox is suffocating me this week", "none", None),
        ("arm went dead from sleeping on it, shook it out and it was fine", "none", None),
        ("lips tingly after the spicy curry, that's the point", "none", None),
        ("numb bum from a 6 hour drive haha", "none", None),
        ("numb fingers every day after the 8 hour shift and they don't come back for hours", "red_flag", "sensory"),
        ("feet numb with cold after the dog walk, fine once I warmed up", "none", None),
        ("my leg has been numb since a 6 hour drive two weeks ago and it is still numb", "red_flag", "sensory"),
        ("my chest feels like an elephant is sitting on it and my arm hurts", "emergency", "chest_pain"),
        ("my wife had a fit in bed, whole body shaking", "emergency", "seizure"),
        ("since the flu jab my legs are weak and I keep tripping", "red_flag", "weakness"),
        ("desde la vacuna de la gripe tengo las piernas débiles", "red_flag", "weakness"),
        ("me tienen asfixiada con tanta reunión pero bien de salud", "none", None),
        ("ya es la semana 7 y los brincos siguen igual", "red_flag", "persisting"),
        ("we're on week 9 now, calf still twitching every day", "red_flag", "persisting"),
        ("los tics siguen, ya van 8 semanas en vez de mejorar", "red_flag", "persisting"),
        ("this is week 7 of the program and the twitching has stopped", "none", None),
        ("pill stuck in my throat, can't shift it, spitting and drooling", "emergency", "choking"),
        ("se me atoró un pedazo de carne, no se me baja, babeando", "emergency", "choking"),
        ("I can't say I've noticed any drooling", "none", None),
        ("never had a seizure or anything like that in my life", "none", None),
        ("no tengo debilidad en las manos ni en los pies", "none", None),
        ("los brincos ya no son nomás en el muslo, ahora también en la espalda", "red_flag", "spreading"),
        ("there is a piece of chicken stuck in my throat and I cannot swallow my spit", "emergency", "choking"),
        ("a fishbone got stuck in my throat in 2019, nothing like that since", "none", None),
        ("I speak slowly because English is my second language, always been like that", "none", None),
        ("hablo enredado cuando me pongo nervioso, de toda la vida", "none", None),
        ("always been a slow talker but this week my words are slurred and I drool", "red_flag", "speech"),
        ("still slurring my words, nothing new there", "red_flag", "speech"),
        ("desde niño tengo tics pero ahora me cuesta abotonar la camisa", "red_flag", "daily_activities"),
        ("se me durmió la pierna de estar en cuclillas, se quitó al caminar", "none", None),
        (
            "2 - twitches settled a lot, thanks. Happy to keep the appointment next week on the system. "
            "I won't be here for it anyway, I've made my peace with it.",
            "emergency",
            "self_harm",
        ),
        (
            "1, todo tranquilo con los brincos. Les confirmo la cita del martes. Igual no creo que llegue, "
            "ya no quiero seguir aqui.",
            "emergency",
            "self_harm",
        ),
        # session 26 (set AD and a retired set read again after a signature change): asking whether to take the
        # patient to the ER made the relative's report someone else's history; a child as the object of the
        # patient's verb made the next symptom the child's; a muscle "going away" and the hollow it leaves
        (
            "her mouth is pulled down on one side and her words are slurred, do I drive her to the ER?",
            "emergency",
            None,
        ),
        (
            "a mi papá se le cayó la cara de un lado y no se le entiende al hablar, ¿lo llevo al hospital?",
            "emergency",
            None,
        ),
        ("hard to do up my daughter's buttons now, fingers too clumsy", "red_flag", None),
        ("ya no puedo cargar a mi nieta, los brazos sin fuerza", "red_flag", None),
        ("el musculito entre el pulgar y el indice se me está yendo, se nota el hueco", "red_flag", "wasting"),
        # set AE: places the twitching reached, told with "now ... too" after a comma; a grip that gives out
        ("it was only the right thigh at first, now both legs and my back too", "red_flag", "spreading"),
        ("all good with the new hip, but I spilled three cups this month, my hand keeps giving out", "red_flag", None),
    ],
)
def test_kind_of_reply(screen: Screen, text: str, level: str, criterion: str | None) -> None:
    """Each kind is read at the level a clinician expects, for the criterion that makes it so."""
    verdict = screen.assess(text)
    assert verdict.level == level, verdict.explanation()
    if criterion is not None:
        assert criterion in verdict.criteria, verdict.explanation()


@pytest.mark.parametrize(
    "text",
    ["fui a spinning y acabe sin aire", "se me durmio la boca por la anestesia del dentista pero ya se me paso"],
)
def test_short_spanish_is_read_as_spanish(screen: Screen, text: str) -> None:
    """A short Spanish reply with two Spanish function words is read in Spanish, not sent to review as unreadable."""
    verdict = screen.assess(text)
    assert verdict.language == "es" and verdict.review_reason != "language", verdict.explanation()
